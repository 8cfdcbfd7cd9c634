"""The noise-replay attack (diffsem/attacks/replay.py), the regression guard of issue 19's item 1: self-noise from a
guessable seed is replayed and removed; self-noise from the OS is not, and then the attack is exactly the inversion
decoder. Frames come from the core's transmitter step and link, as the live transmitter and emulator make them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diffsem.attacks import load_attack
from diffsem.bundle import ModelBundle, encode_all
from diffsem.config import LinkConfig
from diffsem.data import load_split
from diffsem.framepath import TX, carry, transmit, view
from diffsem.phy import Link
from diffsem.seeds import derive_seed, os_seed

SNR, T_STAR, N, BATCH = 20.0, 700, 300, 50  # t* = 700: where self-noise is meant to protect
# BATCH = 50: batches straddle the replayer's chunks of 256 rows, as live batches do


@pytest.fixture(scope="module")
def data(mnist_bundle: ModelBundle) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_split("mnist", "test")
    return encode_all(mnist_bundle, images[:N]).cpu(), labels[:N]


def live_views(bundle: ModelBundle, s: torch.Tensor, tx_gen: torch.Tensor, first_seq: int = 0,
               eve_snr_db: float = SNR) -> list:
    """What an eavesdropper at ``eve_snr_db`` receives, batch by batch, from a transmitter drawing from ``tx_gen``
    (one ``randn((B, k))`` per batch, as live), with the frames' public seq in the header."""
    link = Link(LinkConfig(snr_db=eve_snr_db, seed=1), bundle.cfg.k)
    out = []
    for i in range(0, len(s), BATCH):
        x, header, _ = transmit(s[i:i + BATCH], T_STAR, bundle.abar, torch.zeros(len(s[i:i + BATCH])), tx_gen)
        v = view(carry(x, link), header)
        seq = torch.arange(first_seq + i, first_seq + i + len(x))
        out.append((v, dataclasses.replace(header, seq=seq)))
    return out


def judged(bundle: ModelBundle, attack: str, views: list, labels: torch.Tensor) -> tuple[float, object]:
    att = load_attack(attack, bundle)
    recs = torch.cat([att.attack(v.z, v.abar_eff, h)[1] for v, h in views])
    return float((bundle.judge(recs).argmax(1) == labels).float().mean()), att


def test_self_noise_from_a_public_seed_is_replayed_and_removed(mnist_bundle: ModelBundle, data: tuple) -> None:
    s, labels = data
    views = live_views(mnist_bundle, s, torch.Generator().manual_seed(0))  # the former default: --seed 0
    plain, _ = judged(mnist_bundle, "inversion-decoder", views, labels)
    replay, att = judged(mnist_bundle, "noise-replay", views, labels)
    details = att.details()
    a = float(mnist_bundle.abar[T_STAR])
    assert details["replay_matched"] == str(N) and details["replay_seed"] == "0" and details["replay_offset"] == "0"
    level = float(details["replay_level_out_sum"]) / N
    assert level == pytest.approx(a / (a + 10 ** (-SNR / 10)), rel=0.02)  # only the channel's own noise is left
    assert float(details["replay_level_in_sum"]) / N == pytest.approx(a, rel=0.02)  # compensated: a as received
    assert replay > plain + 0.1, (replay, plain)


def test_a_generator_reseeded_mid_run_with_a_derived_seed_is_found_by_its_anchor(mnist_bundle: ModelBundle,
                                                                                   data: tuple) -> None:
    s, _ = data
    seed = derive_seed(0, TX, SNR, T_STAR)  # what the live-vs-offline benchmark sets with PUT /api/links
    views = live_views(mnist_bundle, s, torch.Generator().manual_seed(seed), first_seq=1000, eve_snr_db=10.0)
    att = load_attack("noise-replay", mnist_bundle)
    for v, h in views:
        att.attack(v.z, v.abar_eff, h)
    assert att.details()["replay_offset"] == "1000" and att.details()["replay_matched"] == str(N)


def test_self_noise_from_the_os_is_not_replayed_and_the_attack_is_the_inversion_decoder(
        mnist_bundle: ModelBundle, data: tuple) -> None:
    s, _ = data
    views = live_views(mnist_bundle, s, torch.Generator().manual_seed(os_seed()))  # the default stack's
    replay, plain = load_attack("noise-replay", mnist_bundle), load_attack("inversion-decoder", mnist_bundle)
    for v, h in views:
        assert torch.equal(replay.attack(v.z, v.abar_eff, h)[1], plain.attack(v.z, v.abar_eff, h)[1])
    assert replay.details()["replay_matched"] == "0" and "replay_seed" not in replay.details()


def test_offline_frames_carry_no_seq_so_nothing_is_replayed(mnist_bundle: ModelBundle, data: tuple) -> None:
    """The offline evaluator's seeds are the experimenter's: its headers carry no seq, and the attack's row in a
    table can only repeat the inversion decoder's, never inflate it."""
    s, _ = data
    v, h = live_views(mnist_bundle, s[:BATCH], torch.Generator().manual_seed(0))[0]
    h = dataclasses.replace(h, seq=None)
    replay, plain = load_attack("noise-replay", mnist_bundle), load_attack("inversion-decoder", mnist_bundle)
    assert torch.equal(replay.attack(v.z, v.abar_eff, h)[1], plain.attack(v.z, v.abar_eff, h)[1])
    assert not replay.in_default_zoo and replay.weights_name() == "inversion-decoder"
