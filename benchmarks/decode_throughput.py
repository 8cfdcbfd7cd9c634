"""Receiver decode throughput per mode at batch 256, with U-Net evaluations per image.

    .venv/bin/python benchmarks/decode_throughput.py [--dataset mnist] [--device auto] [--repeats 5]

Times DiffusionReceiver.decode on real test latents at the default t* and 10 dB, after one warm-up call.
Ratios are against ``direct`` measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from diffsem.bundle import encode_all, load_bundle
from diffsem.data import load_split
from diffsem.defaults import checkpoint_dir
from diffsem.evaluate import DEFAULT_T_STAR
from diffsem.framepath import LEGIT, condition_links, send
from diffsem.receiver import DiffusionReceiver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--checkpoints", type=Path, default=None, help="bundle folder (default checkpoints/<dataset>)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", default="1,2,4")
    args = ap.parse_args()
    bundle = load_bundle(args.checkpoints or checkpoint_dir(args.dataset), device=args.device)
    images, _ = load_split(args.dataset, "test")
    s = encode_all(bundle, images[:args.batch].to(bundle.device)).cpu()
    links, gens = condition_links(bundle.cfg.k, 0, 10.0, DEFAULT_T_STAR, [], {})
    legit = send(s, DEFAULT_T_STAR, bundle.abar, links, gens).views[LEGIT]
    z, level = legit.z, legit.abar_eff
    runs = [("direct", 1)] + [(m, k) for m in ("denoise", "selfref") for k in map(int, args.steps.split(","))]
    results = []
    for mode, steps in runs:
        rx = DiffusionReceiver(bundle, steps=steps)
        rx.decode(z, level, mode)  # warm-up
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            res = rx.decode(z, level, mode)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / args.repeats
        results.append({"mode": mode, "steps": steps if mode != "direct" else 0, "unet_evals": res.unet_evals,
                        "images_per_s": args.batch / dt, "ms_per_batch": 1000 * dt})
    base = results[0]["images_per_s"]
    dev = torch.cuda.get_device_name() if bundle.device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {dev}; torch {torch.__version__}; {platform.processor() or platform.machine()}; batch {args.batch}")
    print("| mode | U-Net evals/image | images/s | ms/batch | vs direct |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['unet_evals']} | {r['images_per_s']:.0f} | {r['ms_per_batch']:.1f} | "
              f"{r['images_per_s'] / base:.3f} |")
    print(json.dumps({"device": dev, "results": results}))


if __name__ == "__main__":
    main()
