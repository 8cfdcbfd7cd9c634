"""The attack zoo on a small real MNIST slice: each attack's fit + attack beats chance with no self-noise; the judge
is independent of the receiver's classifier; bad input (unknown name, foreign checkpoint, whitebox without the
transmitter checkpoint) gets a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from diffsem.attacks import known_attacks, load_attack, make_attack, save_attack
from diffsem.attacks.run import evaluate_attacks, write_attack_report
from diffsem.bundle import DEFAULT_CHECKPOINTS, ModelBundle
from diffsem.data import load_split, transmitter_split
from diffsem.errors import CheckpointError, ConfigError
from diffsem.models import ImageJudge, NoiseAwareClassifier
from diffsem.pipeline import listener_view, self_noise_frame


@pytest.fixture(scope="module")
def aux() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", "train")
    _, idx = transmitter_split(len(images))
    return images[idx[:2000]], labels[idx[:2000]]


@pytest.fixture(scope="module")
def test_slice() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", "test")
    return images[:200], labels[:200]


def _intercept(bundle: ModelBundle, images: torch.Tensor, snr_db: float = 20.0):
    s = bundle.encoder(images).detach()
    x, header = self_noise_frame(s, None, bundle.abar, 10 ** (-snr_db / 10), torch.Generator().manual_seed(1))
    s2 = 10 ** (-snr_db / 10)
    y = x + s2 ** 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    z, level = listener_view(y, header, s2)
    return z, level, header


def _accuracy(bundle: ModelBundle, labels_or_rec: tuple, truth: torch.Tensor) -> float:
    lab, rec = labels_or_rec
    if lab is None:
        lab = bundle.judge(rec).argmax(1)
    return float((lab == truth).float().mean())


def test_builtins_are_known() -> None:
    assert {"feature-classifier", "inversion-decoder", "whitebox-inversion", "adaptive-diffusion"} <= set(known_attacks())


def test_unknown_attack_lists_installed_ones(mnist_bundle: ModelBundle) -> None:
    with pytest.raises(ConfigError, match="unknown attack 'nope'.*feature-classifier.*inversion-decoder"):
        make_attack("nope", mnist_bundle)


def test_judge_is_independent_of_the_receiver_classifier(mnist_bundle: ModelBundle) -> None:
    assert isinstance(mnist_bundle.judge, ImageJudge) and isinstance(mnist_bundle.classifier, NoiseAwareClassifier)
    assert not isinstance(mnist_bundle.judge, NoiseAwareClassifier)
    assert mnist_bundle.cards["judge"]["file"] != mnist_bundle.cards["classifier"]["file"]
    jp = {id(p) for p in mnist_bundle.judge.parameters()}
    assert not jp & {id(p) for p in mnist_bundle.classifier.parameters()}


@pytest.mark.parametrize("name", ["feature-classifier", "inversion-decoder", "adaptive-diffusion"])
def test_attack_fits_and_beats_chance_without_self_noise(name: str, mnist_bundle: ModelBundle, aux, test_slice) -> None:
    torch.manual_seed(0)  # the attack's initial weights; without it the result depends on the test order
    att = make_attack(name, mnist_bundle, **({"train_snr_db": 20.0} if name == "inversion-decoder" else {}))
    if att.trainable:
        att.fit(*aux, epochs=5 if name == "inversion-decoder" else 1)
    z, level, header = _intercept(mnist_bundle, test_slice[0])
    acc = _accuracy(mnist_bundle, att.attack(z, level, header), test_slice[1])
    assert acc > 0.3, f"{name}: {acc}"  # chance is 0.1


def test_whitebox_needs_explicit_enable_and_then_beats_chance(mnist_bundle: ModelBundle, test_slice) -> None:
    with pytest.raises(ConfigError, match="transmitter_checkpoint"):
        make_attack("whitebox-inversion", mnist_bundle)
    with pytest.raises(CheckpointError, match="not found"):
        make_attack("whitebox-inversion", mnist_bundle, transmitter_checkpoint="/nonexistent")
    att = make_attack("whitebox-inversion", mnist_bundle, transmitter_checkpoint=DEFAULT_CHECKPOINTS / "mnist", steps=60)
    z, level, header = _intercept(mnist_bundle, test_slice[0][:64])
    assert _accuracy(mnist_bundle, att.attack(z, level, header), test_slice[1][:64]) > 0.3


def test_attack_checkpoint_round_trip_and_foreign_checkpoints_refused(mnist_bundle: ModelBundle, tmp_path: Path) -> None:
    att = make_attack("inversion-decoder", mnist_bundle)
    path = tmp_path / "attacks" / "inversion-decoder.safetensors"
    save_attack(att, path, {})
    other = make_attack("inversion-decoder", mnist_bundle)
    load_attack(other, path)
    assert all(torch.allclose(a, b, atol=1e-2) for a, b in zip(att.decoder.state_dict().values(),
                                                             other.decoder.state_dict().values(), strict=True))
    card = json.loads(path.with_suffix(".json").read_text())
    card["config"]["dataset"] = "fashion_mnist"
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="dataset='fashion_mnist'.*dataset='mnist'"):
        load_attack(other, path)
    card["config"]["dataset"], card["config"]["k"] = "mnist", 128
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="k=128.*k=256"):
        load_attack(other, path)
    card["config"]["k"], card["attack"] = 256, "adaptive-diffusion"
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="'adaptive-diffusion' but 'inversion-decoder'"):
        load_attack(other, path)


def test_committed_inversion_decoder_leaks_without_self_noise(mnist_bundle: ModelBundle, test_slice, tmp_path) -> None:
    att = make_attack("inversion-decoder", mnist_bundle)
    load_attack(att, DEFAULT_CHECKPOINTS / "mnist" / "attacks" / "inversion-decoder.safetensors")
    res = evaluate_attacks(mnist_bundle, {"inversion-decoder": att}, *test_slice, [None, 600], [0.0], [20.0])
    by = {(r["self_noise"], r["t_star"]): r for r in res["rows"]}
    assert by[("random", None)]["judged_acc"] > 0.7 and by[("random", None)]["legit_acc"] > 0.9
    assert by[("keyed", 600)]["legit_acc"] > by[("random", 600)]["legit_acc"]  # the key holder sees less noise
    paths = write_attack_report(res, tmp_path)
    assert all(p.exists() for p in paths.values())

