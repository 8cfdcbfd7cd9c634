"""Full default training (about 19 minutes on 2 cores): run with ``pytest -m slow``."""

import pytest
import torch

from diffsem.bundle import encode_all, load_bundle
from diffsem.data import load_split
from diffsem.receiver import DiffusionReceiver
from diffsem.train import TrainConfig, train_all


@pytest.mark.slow
def test_default_training_reaches_the_committed_clean_accuracy(tmp_path):
    train_all(TrainConfig(dataset="mnist"), tmp_path / "ck")
    bundle = load_bundle(tmp_path / "ck", device="cpu")
    images, labels = load_split("mnist", "test")
    decided = DiffusionReceiver(bundle).decode(encode_all(bundle, images), torch.ones(len(images)), "direct").labels
    assert float((decided == labels).float().mean()) >= 0.985
