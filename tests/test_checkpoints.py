"""Checkpoint round trip and refusal of mismatched checkpoints."""

import pytest
import torch

from diffsem.bundle import load_bundle
from diffsem.checkpoints import load_weights, save_weights
from diffsem.config import ModelConfig
from diffsem.defaults import DEFAULT_CHECKPOINTS
from diffsem.errors import CheckpointError
from diffsem.models import NoiseAwareClassifier


def test_round_trip_preserves_weights_to_storage_precision(tmp_path):
    cfg = ModelConfig()
    src, dst = NoiseAwareClassifier(cfg), NoiseAwareClassifier(cfg)
    save_weights(src, tmp_path / "c.safetensors", {"config": cfg.model_dump(mode="json"), "model_id": "m1"})
    card = load_weights(dst, tmp_path / "c.safetensors", cfg, "m1")
    assert card["model_id"] == "m1" and "code_version" in card
    assert (tmp_path / "c.safetensors").stat().st_mode & 0o044 == 0o044  # readable by a container's service user
    for (name, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), name
    z = torch.randn(3, 256)
    assert torch.allclose(src(z, torch.ones(3)), dst(z, torch.ones(3)), atol=1e-2)


def test_mismatched_k_names_both_sides(tmp_path):
    cfg = ModelConfig(k=256)
    save_weights(NoiseAwareClassifier(cfg), tmp_path / "c.safetensors", {"config": cfg.model_dump(mode="json")})
    with pytest.raises(CheckpointError, match=r"k=256.*k=128"):
        load_weights(NoiseAwareClassifier(ModelConfig(k=128)), tmp_path / "c.safetensors", ModelConfig(k=128))


def test_mismatched_model_id_and_dataset_are_refused(mnist_bundle):
    assert mnist_bundle.cards["encoder"]["model_id"] == mnist_bundle.model_id
    with pytest.raises(CheckpointError, match="but 'other-model' was requested"):
        load_bundle(DEFAULT_CHECKPOINTS / "mnist", model_id="other-model", device="cpu")
    with pytest.raises(CheckpointError, match=r"dataset='mnist' but dataset='fashion-mnist'"):
        load_bundle(DEFAULT_CHECKPOINTS / "mnist", expected=ModelConfig(dataset="fashion-mnist"), device="cpu")


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    cfg = ModelConfig()
    path = tmp_path / "c.safetensors"
    save_weights(NoiseAwareClassifier(cfg), path, {"config": cfg.model_dump(mode="json")})
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_weights(NoiseAwareClassifier(cfg), path, cfg)
    (tmp_path / "c.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_weights(NoiseAwareClassifier(cfg), path, cfg)


def test_cards_name_the_data_by_checksum_not_by_a_host_path(repo_root) -> None:
    import json

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    cards = sorted((repo_root / "checkpoints").glob("**/*.json"))
    weights = sorted((repo_root / "checkpoints").glob("**/*.safetensors"))
    # every weight file has its card beside it, and each data set has its bundle.json: no card goes unchecked
    assert {w.with_suffix(".json") for w in weights} | set((repo_root / "checkpoints").glob("*/bundle.json")) \
        == set(cards)
    assert len(weights) >= 2 * 6  # at least the six bundle parts of each data set
    for card in cards:
        found = json.loads(card.read_text())
        assert not [s for s in strings(found) if s.startswith(("/", "~"))], card
        if "sha256" in found.get("dataset", {}):
            assert set(found["dataset"]) == {"name", "sha256"}, card
