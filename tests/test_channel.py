"""The channel convention of docs/design.md §3, measured statistically, on the core's flat :class:`Link`."""

import math

import pytest
import torch

from diffsem.channel import from_symbols, noise_variance, to_symbols
from diffsem.config import LinkConfig, ModelConfig
from diffsem.models import SemanticEncoder, power_normalise
from diffsem.phy import Link
from diffsem.phy.flat import draw_gains


def apply_link(x: torch.Tensor, cfg: LinkConfig, seed: int):
    """x over a fresh flat link of ``cfg`` seeded with ``seed`` (its gains, noise and erasures)."""
    return Link(cfg.model_copy(update={"seed": seed}), x.shape[1]).carry(x)


def _db(x: float) -> float:
    return 10 * math.log10(x)


def test_power_normalisation_gives_unit_power_per_real_dim():
    s = power_normalise(torch.randn(64, 256) * 7 + 3)
    assert torch.allclose(s.pow(2).mean(dim=1), torch.ones(64), atol=1e-5)
    enc = SemanticEncoder(ModelConfig())
    z = enc(torch.rand(16, 1, 28, 28))
    assert z.shape == (16, 256)
    assert torch.allclose(z.pow(2).mean(dim=1), torch.ones(16), atol=1e-5)


def test_symbols_have_unit_power_and_round_trip():
    x = power_normalise(torch.randn(100, 256))
    c = to_symbols(x)
    assert c.shape == (100, 128)
    assert abs(float(c.abs().pow(2).mean()) - 1.0) < 1e-5
    assert torch.allclose(from_symbols(c), x, atol=1e-6)


@pytest.mark.parametrize("snr_db", [-10.0, 0.0, 7.5, 20.0])
def test_awgn_measured_snr_matches_configuration(snr_db):
    # 10^6 complex symbols: 4000 frames of k = 500 real values.
    x = power_normalise(torch.randn(4000, 500, generator=torch.Generator().manual_seed(1)))
    out = apply_link(x, LinkConfig(snr_db=snr_db), 2)
    sig = to_symbols(x)
    noise = to_symbols(out.latent) - sig
    measured = _db(float(sig.abs().pow(2).mean()) / float(noise.abs().pow(2).mean()))
    assert abs(measured - snr_db) < 0.05
    # Per real latent dimension the noise variance is N0 (sigma_c^2 with |h| = 1).
    assert abs(_db(float((out.latent - x).pow(2).mean())) - _db(float(noise_variance(snr_db)))) < 0.05
    assert torch.allclose(out.sigma_c2, torch.full((4000,), float(noise_variance(snr_db)), dtype=torch.float32))


@pytest.mark.parametrize("fading", ["rayleigh", "rician"])
def test_equalised_fading_noise_is_n0_over_gain(fading):
    snr_db = 10.0
    link = LinkConfig(snr_db=snr_db, fading=fading, rician_k=3.0)
    x = power_normalise(torch.randn(4000, 500, generator=torch.Generator().manual_seed(3)))
    out = apply_link(x, link, 4)
    # Undo the equalisation: h * (y_eq - x) is the raw channel noise, whose power must be N0.
    raw = out.gain[:, None] * (to_symbols(out.latent) - to_symbols(x))
    measured_snr = _db(1.0 / float(raw.abs().pow(2).mean()))
    assert abs(measured_snr - snr_db) < 0.05
    # The reported sigma_c^2 is N0 / |h|^2 frame by frame.
    expected = noise_variance(snr_db) / out.gain.abs().double().pow(2)
    assert torch.allclose(out.sigma_c2.double(), expected, rtol=1e-5)


@pytest.mark.parametrize("fading", ["rayleigh", "rician"])
def test_fading_has_unit_average_power(fading):
    h = draw_gains(400_000, LinkConfig(fading=fading, rician_k=2.0), torch.Generator().manual_seed(5))
    assert abs(_db(float(h.abs().pow(2).mean()))) < 0.05


def test_same_seed_gives_bit_identical_noise_and_other_seed_does_not():
    x = power_normalise(torch.randn(8, 256))
    link = LinkConfig(snr_db=3.0, fading="rayleigh", erasure_prob=0.1)
    a = apply_link(x, link, 42)
    b = apply_link(x, link, 42)
    c = apply_link(x, link, 43)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.gain, b.gain) and torch.equal(a.erased, b.erased)
    assert not torch.equal(a.latent, c.latent)


def test_erasure_zeroes_the_flagged_dimensions_at_the_configured_rate():
    x = power_normalise(torch.randn(2000, 256))
    out = apply_link(x, LinkConfig(snr_db=20.0, erasure_prob=0.25), 0)
    assert abs(float(out.erased.float().mean()) - 0.25) < 0.01
    assert torch.all(out.latent[out.erased] == 0)


def test_block_fading_holds_each_gain_for_its_coherence_frames_and_feedback_draws_them_ahead():
    """coherence_frames = 4: gains change every 4 frames (one draw per block, from the link's fading generator); the
    CSI that feedback(n) returns is N0/|h|^2 of exactly the gains the next carry(n) meets."""
    link = Link(LinkConfig(snr_db=10.0, fading="rayleigh", coherence_frames=4, seed=9), 256)
    csi = link.feedback(10)
    out = link.carry(power_normalise(torch.randn(10, 256)))
    assert torch.equal(out.gain, csi.gain) and torch.equal(out.sigma_c2, csi.sigma_c2)
    assert [len(set(out.gain[i:i + 4].tolist())) for i in (0, 4)] == [1, 1] and out.gain[0] != out.gain[4]
    assert out.gain[8] == out.gain[9] != out.gain[7]
    nxt = link.carry(power_normalise(torch.randn(3, 256)))  # the third block goes on for two more frames
    assert nxt.gain[0] == nxt.gain[1] == out.gain[9] != nxt.gain[2]
