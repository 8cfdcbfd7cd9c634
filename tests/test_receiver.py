"""The per-sample DDIM update agrees with diffusers' DDIMScheduler.step."""

import pytest
import torch
from diffusers import DDIMScheduler

from diffsem.receiver import ddim_step


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_diffusers(eta):
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(10)
    gen = torch.Generator().manual_seed(0)
    x, eps, noise = (torch.randn(4, 4, 8, 8, generator=gen) for _ in range(3))
    for t in (500, 100, 0):
        want = sched.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        prev = t - 100
        a_prev = sched.alphas_cumprod[prev] if prev >= 0 else torch.tensor(1.0)
        got = ddim_step(x, eps, sched.alphas_cumprod[t].expand(4), a_prev.expand(4), eta, noise)
        assert torch.allclose(got, want, atol=1e-5)
