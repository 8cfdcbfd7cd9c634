"""Human judging figures and the judges' calibration against people (docs/design.md §4, "Human judging").

A person labels items blind: reconstructions (what an attack made of a test image) and attention checks (clean
test images). Each answer is a class or "can't tell" (:data:`CANT_TELL`); each judge's label of the same item is a
class or, for the abstaining judge, :data:`~diffsem.judges.ABSTAIN` (the same value: -1). From them:

- **human-judged accuracy**: the share of reconstructions the person labelled correctly ("can't tell" counts as
  not recognised), with a 95% Wilson score interval (Wilson 1927; Agresti & Coull 1998: it keeps its coverage at
  small n and near 0 or 1, where the normal approximation does not);
- **attention checks**: the share of clean images labelled correctly, which says whether the answers are worth
  reading;
- per judge: its **agreement** with the person on the reconstructions (same class, or both "can't tell"), its
  agreement on the items the person labelled, and on the items the person could not tell, the share it still
  labels correctly, incorrectly, or abstains on.

The judge that agrees best with people is the one with the highest agreement (ties: the first by name). Torch-free:
the control panel calls it on its stored answers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CANT_TELL = -1
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
RECONSTRUCTION, CHECK = "reconstruction", "check"


@dataclass(frozen=True)
class Answered:
    """One answered item: ``kind`` (reconstruction or check), the true class, the person's answer (a class or
    :data:`CANT_TELL`) and each judge's label of it (-1: abstained)."""

    kind: str
    truth: int
    answer: int
    judges: dict[str, int] = field(default_factory=dict)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (low, high) of a proportion k/n; (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 (k = n) the bound is exactly 0 (1); the formula leaves rounding error there
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


def judge_calibration(items: list[Answered], name: str) -> dict[str, Any]:
    """One judge against the person on the reconstructions ``items`` (those the judge labelled)."""
    mine = [it for it in items if name in it.judges]
    labelled = [it for it in mine if it.answer != CANT_TELL]
    unsure = [it for it in mine if it.answer == CANT_TELL]
    return {
        "n": len(mine),
        "accuracy": _share(sum(it.judges[name] == it.truth for it in mine), len(mine)),
        "agreement": _share(sum(it.judges[name] == it.answer for it in mine), len(mine)),
        "agreement_on_labelled": _share(sum(it.judges[name] == it.answer for it in labelled), len(labelled)),
        "on_cant_tell": {
            "n": len(unsure),
            "correct": _share(sum(it.judges[name] == it.truth for it in unsure), len(unsure)),
            "incorrect": _share(sum(it.judges[name] not in (it.truth, CANT_TELL) for it in unsure), len(unsure)),
            "abstained": _share(sum(it.judges[name] == CANT_TELL for it in unsure), len(unsure)),
        },
    }


def figures(answered: Iterable[Answered]) -> dict[str, Any]:
    """Every figure of a set (or of many sets' answers pooled): the human-judged accuracy with its 95% interval,
    the "can't tell" count, the attention-check score, each judge's calibration and the judge that agrees best."""
    answered = list(answered)
    recs = [it for it in answered if it.kind == RECONSTRUCTION]
    checks = [it for it in answered if it.kind == CHECK]
    correct = sum(it.answer == it.truth for it in recs)
    low, high = wilson(correct, len(recs))
    judges = sorted({j for it in recs for j in it.judges})
    per = {j: judge_calibration(recs, j) for j in judges}
    ranked = sorted((j for j in judges if per[j]["agreement"] is not None), key=lambda j: (-per[j]["agreement"], j))
    return {
        "answers": len(answered),
        "human": {"n": len(recs), "correct": correct, "accuracy": _share(correct, len(recs)), "ci95": [low, high],
                  "cant_tell": sum(it.answer == CANT_TELL for it in recs)},
        "attention": {"n": len(checks), "correct": sum(it.answer == it.truth for it in checks),
                      "accuracy": _share(sum(it.answer == it.truth for it in checks), len(checks))},
        "judges": per,
        "best_judge": ({"judge": ranked[0], "agreement": per[ranked[0]]["agreement"], "answers": len(recs)}
                       if ranked else None),
    }
