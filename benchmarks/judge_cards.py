"""The robust and the abstaining judges' figures, re-measured on the committed float16 weights (their cards hold the
figures measured before the float16 round trip).

    .venv/bin/python benchmarks/judge_cards.py --dataset mnist [--pgd-images 2000] [--out FILE.json]

- ``robust`` (docs/design.md §4): clean accuracy on all test images, and accuracy under PGD-40 at the data set's
  L∞ ε (``diffsem.robust``: step 2.5 ε / 40, random start) on the first ``--pgd-images``;
- ``abstain``: clean accuracy with an abstention counted wrong, the abstention rate on clean test images, and the
  abstention rate on held-out draws of each negative kind (``diffsem.abstain.abstention_metrics``: 2000 each).

A judge missing from ``checkpoints/<dataset>/judges`` is skipped. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffsem.abstain import abstention_metrics
from diffsem.bundle import EAVESDROPPER_PARTS, load_bundle
from diffsem.data import load_split
from diffsem.defaults import checkpoint_dir
from diffsem.judges import judge_accuracy, judge_path, load_judge
from diffsem.robust import pgd_accuracy, robust_eps


def measure(dataset: str, pgd_images: int) -> dict:
    folder = checkpoint_dir(dataset)
    cfg = load_bundle(folder, device="cpu", parts=EAVESDROPPER_PARTS).cfg
    images, labels = load_split(dataset, "test")
    out: dict = {"dataset": dataset, "n": len(labels)}
    if judge_path(folder, "robust").exists():
        judge, _ = load_judge(judge_path(folder, "robust"), cfg)
        t0 = time.time()
        eps = robust_eps(dataset)
        out["robust"] = {"eps": eps, "clean_test_acc": judge_accuracy(judge, images, labels),
                         "pgd40_acc": pgd_accuracy(judge, images[:pgd_images], labels[:pgd_images], eps),
                         "pgd_images": pgd_images, "seconds": round(time.time() - t0, 1)}
    if judge_path(folder, "abstain").exists():
        judge, _ = load_judge(judge_path(folder, "abstain"), cfg)
        out["abstain"] = abstention_metrics(judge, images, labels, dataset)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--pgd-images", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = measure(args.dataset, args.pgd_images)
    print("| judge | figure | value |")
    print("|---|---|---|")
    for judge in ("robust", "abstain"):
        for k, v in res.get(judge, {}).items():
            shares = k.endswith(("acc", "abstentions", "abstained")) or k.startswith("abstained")
            print(f"| {judge} | {k} | {100 * v:.2f}% |" if shares else f"| {judge} | {k} | {v} |")
    print(json.dumps(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
