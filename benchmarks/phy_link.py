"""Emulator-side cost of one link per PHY: frames/s of ``draw`` + ``carry`` (+ the CSI feedback the transmitter reads).

    .venv/bin/python benchmarks/phy_link.py [--threads 2] [--batches 1,16,64,256] [--seconds 3] [--out FILE.json]

For each batch size B it pushes batches of B random unit-power frames (k = 256) through one link, the way the
channel emulator's per-link step does: a ``flat`` Rayleigh link (``diffsem.framepath.carry`` with the link's
generator, the baseline) and an ``ofdm`` link (TDL-A 100 ns, 3.5 GHz, 3 km/h, 14 x 12 grid at 30 kHz, LS + LMMSE,
per-RE feedback with delay 1: ``OfdmLink.draw`` + ``carry`` + ``latest_feedback``). Channel windows are drawn as
they fall due, so their cost is included. One warm-up batch per case; then as many batches as fit in --seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from diffsem.config import LinkConfig
from diffsem.framepath import carry
from diffsem.models import power_normalise
from diffsem.phy import make_link

K = 256
FLAT = LinkConfig(snr_db=10.0, fading="rayleigh")
OFDM = LinkConfig(snr_db=10.0, phy="ofdm", channel_model="TDL-A", delay_spread_ns=100.0, carrier_ghz=3.5,
                  speed_kmh=3.0, estimator="ls", feedback="re", feedback_delay=1)


def _rate(step: Callable[[torch.Tensor], object], batch: int, seconds: float) -> float:
    """Frames per second of ``step`` on batches of ``batch`` frames, after one warm-up batch."""
    x = power_normalise(torch.randn(batch, K, generator=torch.Generator().manual_seed(0)))
    step(x)
    frames, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step(x)
        frames += batch
    return frames / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,16,64,256")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    flat_gen = torch.Generator().manual_seed(1)
    ofdm = make_link(OFDM, torch.Generator().manual_seed(2), K)

    def ofdm_step(x: torch.Tensor) -> None:
        ofdm.carry(x, ofdm.draw(len(x)))
        ofdm.latest_feedback()

    rows = []
    for b in [int(v) for v in args.batches.split(",")]:
        flat = _rate(lambda x: carry(x, FLAT, flat_gen), b, args.seconds)
        rate = _rate(ofdm_step, b, args.seconds)
        rows.append({"batch": b, "flat_frames_per_s": round(flat), "ofdm_frames_per_s": round(rate),
                     "ofdm_over_flat": round(rate / flat, 3)})
        print(f"batch {b:4d}: flat {flat:9.0f} frames/s   ofdm {rate:8.0f} frames/s   ({rate / flat:.3f}x)", flush=True)
    res = {"threads": args.threads, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "ofdm": OFDM.model_dump(mode="json"), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
