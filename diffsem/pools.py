"""Judging pools: one attack's reconstructions at one condition, kept for people to judge blind (docs/design.md §4,
"Human judging").

``diffsem attack eval --pools DIR`` writes one pool per reconstruction row: ``<name>.npz`` with the
reconstructions as 8-bit images, the true labels, every judge's and judge-free measure's label of each, and clean
test images for attention checks; ``<name>.json`` with what the pool is (data set, class names, attack, threat
model, condition, the row's figures). The control panel's "Judge it yourself" page draws sets from pools; the key
(labels and judges' labels) stays in the panel and never reaches the page.

NumPy only (no torch): the panel reads pools without loading a model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffsem.errors import ConfigError

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}
CHECKS = 50  # clean attention-check images per pool: the last CHECKS test images, never an attacked one
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
NO_POOLS = "none (make them with `diffsem attack eval --pools DIR`; start the panel with --judging-pools DIR)"


class PoolError(ConfigError):
    """A pool name that is not a pool in the folder, or a pool file that cannot be read."""


@dataclass
class Pool:
    """A pool in memory: images (N, 28, 28) uint8, labels (N,), judges' labels {name: (N,)} (-1: abstained), checks
    (M, 28, 28) uint8 with labels (M,), and the JSON card."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    judge_labels: dict[str, np.ndarray]
    checks: np.ndarray
    check_labels: np.ndarray
    card: dict[str, Any]


def pool_name(dataset: str, row: dict[str, Any]) -> str:
    """``<dataset>-<attack>-<snr>db-<self-noise>-t<t* or none>-eve<offset>``, e.g.
    ``mnist-whitebox-inversion-20db-random-t300-eve0``."""
    t = "none" if row["t_star"] is None else row["t_star"]
    return f"{dataset}-{row['attack']}-{row['snr_db']:g}db-{row['self_noise']}-t{t}-eve{row['eve_offset_db']:g}"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Images (N, 1, 28, 28) or (N, 28, 28) in [0, 1] -> (N, 28, 28) uint8."""
    return (np.clip(np.asarray(images, dtype=np.float32).reshape(-1, 28, 28), 0, 1) * 255).round().astype(np.uint8)


def write_pool(folder: Path, name: str, images: np.ndarray, labels: np.ndarray, judge_labels: dict[str, np.ndarray],
               checks: np.ndarray, check_labels: np.ndarray, card: dict[str, Any]) -> Path:
    """Write ``folder/<name>.npz`` and ``folder/<name>.json``; return the npz path."""
    if not NAME.fullmatch(name):
        raise PoolError(f"pool name {name!r} must match {NAME.pattern}")
    folder.mkdir(parents=True, exist_ok=True)
    names = list(judge_labels)
    path = folder / f"{name}.npz"
    np.savez_compressed(path, images=to_uint8(images), labels=np.asarray(labels, dtype=np.int16),
                        judge_names=np.asarray(names, dtype=str),
                        judge_labels=np.stack([np.asarray(judge_labels[n], dtype=np.int16) for n in names])
                        if names else np.zeros((0, len(labels)), dtype=np.int16),
                        checks=to_uint8(checks), check_labels=np.asarray(check_labels, dtype=np.int16))
    full = {"name": name, "n": int(len(labels)), "checks": int(len(check_labels)), "judges": names, **card}
    path.with_suffix(".json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return path


def pool_files(folder: Path | None) -> list[str]:
    """The names of the pools in ``folder`` (regular files with both parts), sorted; none without a folder."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(p.stem for p in Path(folder).glob("*.npz")
                  if NAME.fullmatch(p.stem) and p.is_file() and not p.is_symlink() and p.with_suffix(".json").is_file())


def read_pool(folder: Path | None, name: str) -> Pool:
    """The pool ``name`` from ``folder``. The name is checked before any path is built: it must match :data:`NAME`
    and be a regular file directly inside the folder (no symlink out); otherwise :class:`PoolError` lists what
    there is."""
    if not NAME.fullmatch(name or "") or name not in pool_files(folder):
        known = ", ".join(pool_files(folder)) or NO_POOLS
        raise PoolError(f"no pool {name!r}; pools: {known}")
    path = Path(folder) / f"{name}.npz"  # type: ignore[arg-type]
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        card = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise PoolError(f"pool {name!r} cannot be read: {type(exc).__name__}") from None
    names = [str(n) for n in arrays["judge_names"]]
    return Pool(name, arrays["images"], arrays["labels"].astype(np.int64),
                {n: arrays["judge_labels"][i].astype(np.int64) for i, n in enumerate(names)}, arrays["checks"],
                arrays["check_labels"].astype(np.int64), card)


def pool_summary(folder: Path | None, name: str) -> dict[str, Any]:
    """What a person chooses a pool by: its card without the figures (they would tell the answers' share)."""
    card = json.loads((Path(folder) / f"{name}.json").read_text())  # type: ignore[arg-type]
    return {k: card.get(k) for k in ("name", "dataset", "classes", "attack", "threat_model", "condition", "n",
                                     "checks")}
