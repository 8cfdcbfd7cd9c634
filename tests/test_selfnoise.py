"""Self-noising and its compensation (docs/design.md §3)."""

import torch

from diffsem.config import ModelConfig
from diffsem.diffusion import alphas_cumprod, nearest_timestep
from diffsem.models import power_normalise
from diffsem.pipeline import listener_view, self_noise_frame
from diffsem.selfnoise import abar_eff, sigma_self2

ABAR = alphas_cumprod(ModelConfig())


def test_compensation_holds_while_the_channel_is_no_worse_than_the_target():
    for t_star in (50, 200, 400, 700):
        a = float(ABAR[t_star])
        for s2c in torch.linspace(0, 1 - a, 7, dtype=torch.float64):
            eff = float(abar_eff(a, sigma_self2(a, s2c), s2c))
            assert abs(eff - a) < 1e-9, (t_star, float(s2c))
        for s2c in (1 - a + 1e-3, 1 - a + 0.5, 3.0):
            eff = float(abar_eff(a, sigma_self2(a, s2c), s2c))
            assert eff < a
            assert abs(eff - a / (a + s2c)) < 1e-9  # no self-noise left to remove


def test_transmit_power_is_at_most_one_and_matches_a_plus_sigma_self():
    s = power_normalise(torch.randn(4000, 256, generator=torch.Generator().manual_seed(0)))
    for t_star, s2c in [(100, 0.01), (300, 0.2), (300, 2.0)]:
        x, header = self_noise_frame(s, t_star, ABAR, s2c, torch.Generator().manual_seed(1))
        power = float(x.pow(2).mean())
        expected = float(ABAR[t_star]) + float(header.sigma_self2[0])
        assert power <= 1.0 + 0.01
        assert abs(power - expected) < 0.01


def test_received_latent_is_distributed_as_z_t_at_abar_eff():
    s = power_normalise(torch.randn(4000, 256, generator=torch.Generator().manual_seed(0)))
    a_target, s2c = float(ABAR[300]), 0.1
    x, header = self_noise_frame(s, 300, ABAR, s2c, torch.Generator().manual_seed(1))
    y = x + s2c**0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    z, level = listener_view(y, header, s2c)
    assert torch.allclose(level, torch.full((4000,), a_target), atol=1e-6)
    residual = z - level.sqrt()[:, None] * s
    assert abs(float(residual.var()) - (1 - a_target)) < 0.01
    assert abs(float(z.pow(2).mean()) - 1.0) < 0.01


def test_nearest_timestep_recovers_each_schedule_step():
    t = torch.tensor([0, 1, 150, 500, 999])
    assert torch.equal(nearest_timestep(ABAR[t], ABAR), t)
