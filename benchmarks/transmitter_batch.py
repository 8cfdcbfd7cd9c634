"""What the transmitter-cost benchmarks share (``precoding_cost.py``, ``live_antennas.py``): their command line, one
encoded batch of MNIST-shaped images, and interleaved timing (one call of each case per round, so a loaded machine
slows them alike; each figure is the median over the rounds after a warm-up round)."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from diffsem.bundle import ModelBundle, load_bundle
from diffsem.defaults import checkpoint_dir


def parse(doc: str, threads: int, repeats: int) -> argparse.Namespace:
    """``--threads`` (torch threads, set here), ``--batch``, ``--repeats`` and ``--out`` (a JSON file)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    return args


@dataclass
class Encoded:
    """The committed MNIST bundle, ``batch`` random images (B, 1, 28, 28) in [0, 1], their latents s (B, k) float32
    and the generator (seed 0) that drew the images and draws every later noise."""

    bundle: ModelBundle
    images: torch.Tensor
    s: torch.Tensor
    gen: torch.Generator


def encoded(batch: int) -> Encoded:
    bundle = load_bundle(checkpoint_dir("mnist"), device="cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 1, 28, 28, generator=gen)
    with torch.no_grad():
        s = bundle.encoder(images)
    return Encoded(bundle, images, s, gen)


def median_ms(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds per call of each case over ``repeats`` interleaved rounds, after one warm-up round. A case
    that returns a float reports its own seconds (the part of the call that is measured); otherwise the whole call
    is timed."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    with torch.no_grad():
        for _ in range(repeats + 1):
            for name, call in cases.items():
                started = time.perf_counter()
                got = call()
                times[name].append(got if isinstance(got, float) else time.perf_counter() - started)
    return {name: statistics.median(t[1:]) * 1e3 for name, t in times.items()}
