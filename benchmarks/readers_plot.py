"""Who reads a reconstruction: every judge of the panel, the abstaining judge and the judge-free measures, per row of
an ``diffsem attack eval`` run, as grouped bars (docs/design.md §4).

    .venv/bin/python benchmarks/readers_plot.py OUT/attacks.json PLOT.png [--title TEXT]

One group per reconstruction row (attack, its threat model, SNR, t*), one bar per reader: the judges in the row's
panel (``abstain``'s bar is its *confidently recognisable* share: an abstention counts as not recognised), then
``knn`` and ``ssim-nn`` where the run had ``--neighbours``. A dashed line per group marks the max over judges, the
task-leakage figure. Prints the plotted values as one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

from diffsem.attacks.run import read_attack_results

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _group(row: dict) -> str:
    t = "none" if row["t_star"] is None else row["t_star"]
    return f"{row['attack']}\n({row.get('threat_model', '?')})\n{row['snr_db']:g} dB, t* {t}"


def readers(rows: list[dict]) -> tuple[list[str], list[str], list[list[float | None]], list[float]]:
    """Groups, reader names, values[group][reader] (None where a row has no such reader), max over judges."""
    rows = [r for r in rows if r.get("judges")]
    names = sorted({j for r in rows for j in r["judges"]}) + sorted({m for r in rows for m in r.get("neighbours", {})})
    values = [[{**r["judges"], **r.get("neighbours", {})}.get(n) for n in names] for r in rows]
    return [_group(r) for r in rows], names, values, [r["judged_max"] for r in rows]


def plot(rows: list[dict], path: Path, title: str = "") -> dict:
    groups, names, values, maxes = readers(rows)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups)), 4.2))
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(groups))]
        ys = [100 * (v[j] or 0.0) for v in values]
        ax.bar(xs, ys, width, label=name, color=f"C{j}", hatch="//" if name in ("knn", "ssim-nn") else None,
               edgecolor="white", linewidth=0.3)
    for i, m in enumerate(maxes):
        ax.hlines(100 * m, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, fontsize=7)
    ax.set_ylabel("accuracy on the reconstructions (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "readers per row (dashed: max over judges)", fontsize=9)
    ax.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"groups": [g.replace("\n", " ") for g in groups], "readers": names, "values": values, "max": maxes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    print(json.dumps(plot(read_attack_results(args.results)["rows"], args.png, args.title)))


if __name__ == "__main__":
    main()
