"""The leakage figures of an attack scored by a panel of judges (docs/design.md §4), importable without torch so
the control panel's ledger uses the same rule as ``diffsem attack eval``."""

from __future__ import annotations


def summarise(per_judge: dict[str, float]) -> dict[str, float]:
    """``max`` (the conservative leakage figure) and ``spread`` (max - min) of per-judge accuracies."""
    values = list(per_judge.values())
    return {"max": max(values), "spread": max(values) - min(values)}
