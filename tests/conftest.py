"""Shared fixtures. Data comes from the real loaders; the data dir is $DIFFSEM_DATA_DIR (see .ci/run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffsem.bundle import DEFAULT_CHECKPOINTS, ModelBundle, load_bundle

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist_bundle() -> ModelBundle:
    """The committed default MNIST checkpoints."""
    return load_bundle(DEFAULT_CHECKPOINTS / "mnist", device="cpu")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
