"""The sweep executor's speed: one attack-evaluation grid through the local executor and through a local Ray runtime
of 1 and 2 workers (one CPU, one torch thread each), its tables checked bit-identical across all three; and the
white-box attack's cost per image, to extrapolate its 10,000-image grid on N workers.

    .venv/bin/python benchmarks/sweep_ray.py [--n 4000] [--whitebox-n 100] [--out out/bench-sweep-ray.json]

The grid: 2 legitimate SNRs x 2 t* x 2 eavesdropper offsets x 2 attacks (feature classifier, inversion decoder)
= 16 cells. Wall times include each Ray runtime's start and every worker's model loading (a cold sweep), and the
machine's load average is recorded before and after: on a shared machine only ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffsem.grids import AttackEvalGrid  # noqa: E402
from diffsem.sweep import LocalExecutor, RayExecutor, run_grid  # noqa: E402


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def grid(n: int, attacks: tuple[str, ...] = ("feature-classifier", "inversion-decoder"), **kw) -> AttackEvalGrid:
    return AttackEvalGrid("mnist", str(ROOT / "checkpoints" / "mnist"), attacks, (0.0, 20.0), ("random",), (None, 300),
                          (0.0, -5.0), n, judges=("cnn", "resnet", "mlp"), adapted=False, **kw)


def rows(results: dict) -> list:
    return [{k: v for k, v in r["row"].items() if k != "seconds"} for r in results.values()]


def timed(executor_factory, g: AttackEvalGrid) -> tuple[float, dict]:
    started = time.perf_counter()
    executor = executor_factory()
    try:
        results = run_grid(g, executor, progress=False)
    finally:
        executor.close()
    return time.perf_counter() - started, results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4000, help="test images per cell")
    p.add_argument("--whitebox-n", type=int, default=100, help="images of the white-box cost measurement")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench-sweep-ray.json")
    args = p.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    g = grid(args.n)
    out: dict = {"cells": len(g.cells()), "n": args.n, "cpus": os.cpu_count(), "load_before": load()}
    import torch

    torch.set_num_threads(1)  # the local executor on one thread too, as each Ray worker is
    out["local_s"], local = timed(LocalExecutor, g)
    print(f"local: {out['local_s']:.1f} s (load {load()})", flush=True)
    out["ray_1_s"], one = timed(lambda: RayExecutor(workers=1), g)
    print(f"ray, 1 worker: {out['ray_1_s']:.1f} s (load {load()})", flush=True)
    out["ray_2_s"], two = timed(lambda: RayExecutor(workers=2), g)
    print(f"ray, 2 workers: {out['ray_2_s']:.1f} s (load {load()})", flush=True)
    out["identical"] = rows(local) == rows(one) == rows(two)
    out["speedup_1_to_2"] = round(out["ray_1_s"] / out["ray_2_s"], 3)

    wb = grid(args.whitebox_n, ("whitebox-inversion",), transmitter_checkpoint=str(ROOT / "checkpoints" / "mnist"))
    cell = wb.cells()[0]
    wb.run_cell(cell)  # load the models first: the cost per image is the attack's alone
    started = time.perf_counter()
    wb.run_cell(cell)
    per_image = (time.perf_counter() - started) / args.whitebox_n
    cell_s = per_image * 10_000
    out["whitebox_s_per_image_1_thread"] = round(per_image, 4)
    out["whitebox_10k_grid_hours"] = {str(w): round(math.ceil(6 / w) * cell_s / 3600, 2) for w in (1, 2, 3, 6)}
    out["load_after"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
