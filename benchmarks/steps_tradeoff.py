"""Diffusion gain against reverse steps (U-Net evaluations per image), for both receiver classifiers.

    .venv/bin/python benchmarks/steps_tradeoff.py [--n 1000] [--snr 10] [--t-stars 500,550,600] [--steps 1,2,4]

Runs the evaluator with only the ``direct`` and ``denoise`` modes at one SNR, once per step count, on the same
images and seeds, and prints accuracy per (steps, t*).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsem.bundle import load_bundle
from diffsem.config import result_key
from diffsem.data import load_split
from diffsem.defaults import checkpoint_dir
from diffsem.evaluate import EvalConfig, evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--checkpoints", type=Path, default=None)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--t-stars", default="500,550,600")
    ap.add_argument("--steps", default="1,2,4")
    args = ap.parse_args()
    bundle = load_bundle(args.checkpoints or checkpoint_dir(args.dataset), device="auto")
    images, labels = load_split(args.dataset, "test")
    t_stars = [int(t) for t in args.t_stars.split(",")]
    print("| steps | t* | matched direct | matched denoise | channel direct | channel denoise | channel gain |")
    print("|---|---|---|---|---|---|---|")
    for steps in map(int, args.steps.split(",")):
        ec = EvalConfig(n=args.n, snrs=[args.snr], t_stars=t_stars, default_t_star=t_stars[0], eve_offsets=[0.0],
                        steps=steps, modes=["direct", "denoise"])
        res = evaluate(bundle, ec, images[:args.n], labels[:args.n])
        for row in res["rows"]:
            if row["t_star"] is None:
                continue
            acc = {(c, m): 100 * row["acc"][result_key(c, m)] for c in ("matched", "channel") for m in ("direct", "denoise")}
            gain = acc["channel", "denoise"] - acc["channel", "direct"]
            print(f"| {steps} | {row['t_star']} | {acc['matched', 'direct']:.1f} | {acc['matched', 'denoise']:.1f} | "
                  f"{acc['channel', 'direct']:.1f} | {acc['channel', 'denoise']:.1f} | {gain:+.1f} |", flush=True)


if __name__ == "__main__":
    main()
