"""Emulator-side cost of one link per PHY: frames/s of the legitimate link's ``feedback(B)`` + ``carry(B)``.

    .venv/bin/python benchmarks/phy_link.py [--threads 2] [--batches 1,16,64,256] [--seconds 3] [--out FILE.json]

For each batch size B it pushes batches of B random unit-power frames (k = 256) through one core
:class:`diffsem.phy.Link`, the way the channel emulator serves the legitimate link (the transmitter's ``Feedback``
draws the batch's channel, its ``Send`` carries the frames over it): a ``flat`` Rayleigh link (the baseline) and an
``ofdm`` link (TDL-A 100 ns, 3.5 GHz, 3 km/h, 14 x 12 grid at 30 kHz, LS + LMMSE, per-RE feedback with delay 1).
Channel windows are drawn as they fall due, so their cost is included. One warm-up batch per case; then as many
batches as fit in --seconds.
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
from diffsem.models import power_normalise
from diffsem.phy import Link

K = 256
FLAT = LinkConfig(snr_db=10.0, fading="rayleigh", seed=1)
OFDM = LinkConfig(snr_db=10.0, seed=2, phy="ofdm", channel_model="TDL-A", delay_spread_ns=100.0, carrier_ghz=3.5,
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
    flat, ofdm = Link(FLAT, K), Link(OFDM, K)

    def step(link: Link) -> Callable[[torch.Tensor], object]:
        return lambda x: (link.feedback(len(x)), link.carry(x))

    rows = []
    for b in [int(v) for v in args.batches.split(",")]:
        flat_rate = _rate(step(flat), b, args.seconds)
        rate = _rate(step(ofdm), b, args.seconds)
        rows.append({"batch": b, "flat_frames_per_s": round(flat_rate), "ofdm_frames_per_s": round(rate),
                     "ofdm_over_flat": round(rate / flat_rate, 3)})
        print(f"batch {b:4d}: flat {flat_rate:9.0f} frames/s   ofdm {rate:8.0f} frames/s   ({rate / flat_rate:.3f}x)",
              flush=True)
    res = {"threads": args.threads, "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
           "ofdm": OFDM.model_dump(mode="json"), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
