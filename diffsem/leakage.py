"""The leakage figures of an attack scored by a panel of judges (docs/design.md §4), importable without torch so
the control panel's ledger uses the same rule as ``diffsem attack eval``."""

from __future__ import annotations

ABSTAINING = "abstain"  # the judge that can say "can't tell" (diffsem.judges re-exports it)


def summarise(per_judge: dict[str, float]) -> dict[str, float]:
    """``max`` (the conservative leakage figure, over every judge) and ``spread`` (max - min over the judges that
    must name a class: the abstaining judge's accuracy falls with its abstentions, so it would measure how often it
    abstained, not how much the figure depends on the reader) of per-judge accuracies."""
    forced = [v for k, v in per_judge.items() if k != ABSTAINING] or list(per_judge.values())
    return {"max": max(per_judge.values()), "spread": max(forced) - min(forced)}
