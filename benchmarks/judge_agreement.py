"""Judge-to-judge agreement on clean test images: each judge's accuracy, and for every pair of judges the share of
images they label alike (docs/design.md §4, the panel of judges).

    .venv/bin/python benchmarks/judge_agreement.py --dataset mnist --n 10000

Prints a markdown table and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from diffsem.bundle import EAVESDROPPER_PARTS, load_bundle
from diffsem.data import load_split
from diffsem.defaults import checkpoint_dir
from diffsem.judges import load_panel


def agreement(dataset: str, n: int, checkpoints: Path | None = None) -> dict:
    """Accuracy per judge, agreement per pair, and the share of images on which every judge agrees."""
    folder = checkpoints or checkpoint_dir(dataset)
    bundle = load_bundle(folder, device="cpu", parts=EAVESDROPPER_PARTS)
    panel = load_panel(bundle, folder)
    images, labels = load_split(dataset, "test")
    images, labels = images[:n], labels[:n]
    t0 = time.time()
    out = panel.labels(images)
    acc = {j: float((lab == labels).float().mean()) for j, lab in out.items()}
    pairs = {f"{a}/{b}": float((out[a] == out[b]).float().mean()) for a, b in itertools.combinations(out, 2)}
    stacked = torch.stack(list(out.values()))
    all_agree = float((stacked == stacked[0]).all(0).float().mean())
    return {"dataset": dataset, "n": len(labels), "model_id": bundle.model_id, "accuracy": acc, "agreement": pairs,
            "all_agree": all_agree, "seconds": round(time.time() - t0, 1)}


def markdown(res: dict) -> str:
    lines = [f"{res['dataset']}, {res['n']} test images: all judges agree on {100 * res['all_agree']:.2f}%",
             "", "| judge | clean accuracy % |", "|---|---|"]
    lines += [f"| {j} | {100 * v:.2f} |" for j, v in res["accuracy"].items()]
    lines += ["", "| pair | agreement % |", "|---|---|"]
    lines += [f"| {p} | {100 * v:.2f} |" for p, v in res["agreement"].items()]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--checkpoints", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    res = agreement(args.dataset, args.n, args.checkpoints)
    print(markdown(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
