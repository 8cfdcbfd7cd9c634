"""A small judging pool with a known key, for the panel's judging tests and the page's benchmark.

Its "reconstructions" are real MNIST test images (so the page shows digits), and its judges are made up so that the
figures are easy to check by hand: ``right`` always gives the true class, ``wrong`` never does, ``unsure`` abstains
(-1) on every third item and is right on the rest. Nothing here is a person's answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffsem.data import load_arrays
from diffsem.pools import CLASS_NAMES, write_pool

POOL = "mnist-test-pool"


def make_pool(folder: Path, n: int = 60, checks: int = 10, name: str = POOL) -> Path:
    images, labels = load_arrays("mnist", "test")
    truth = labels[:n].astype(np.int64)
    judges = {"right": truth, "wrong": (truth + 1) % 10, "unsure": np.where(np.arange(n) % 3 == 0, -1, truth)}
    card = {"dataset": "mnist", "classes": CLASS_NAMES["mnist"], "attack": "whitebox-inversion",
            "threat_model": "white-box", "condition": {"snr_db": 20.0, "self_noise": "random", "t_star": 300,
                                                       "eve_offset_db": 0.0},
            "figures": {"judged_max": 1.0}}
    return write_pool(folder, name, images[:n] / 255.0, truth, judges, images[-checks:] / 255.0,
                      labels[-checks:].astype(np.int64), card)
