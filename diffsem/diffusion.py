"""The DDPM schedule (diffusers), forward diffusion, and the map between noise levels and timesteps."""

from __future__ import annotations

import torch
from diffusers import DDPMScheduler

from diffsem.config import ModelConfig


def make_scheduler(cfg: ModelConfig) -> DDPMScheduler:
    """Linear-beta DDPM schedule. ``clip_sample=False``: latents are not confined to [-1, 1]."""
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule="linear", clip_sample=False,
                         prediction_type="epsilon")


def alphas_cumprod(cfg: ModelConfig) -> torch.Tensor:
    """abar_t for t = 0..T-1, float64, shape (T,)."""
    return make_scheduler(cfg).alphas_cumprod.to(torch.float64)


def nearest_timestep(abar_eff: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Index t whose abar_t is nearest to each ``abar_eff`` (B,); int64 (B,).

    Nearest in log-SNR, log(abar / (1 - abar)), which is what the denoiser's difficulty depends on.
    """
    def logsnr(a: torch.Tensor) -> torch.Tensor:
        a = a.to(torch.float64).clamp(1e-12, 1 - 1e-12)
        return torch.log(a) - torch.log1p(-a)

    return (logsnr(abar_eff)[:, None] - logsnr(abar)[None, :]).abs().argmin(dim=1)


def timestep_table(num_train_timesteps: int, focus: tuple[int, int], focus_weight: float) -> torch.Tensor:
    """Map a uniform draw u in [0, T) to a training timestep; int64 (T,).

    The timesteps follow a mixture: with weight ``1 - focus_weight`` uniform on [0, T), with ``focus_weight``
    uniform on ``focus`` = [lo, hi). Each u maps to the quantile (u + 0.5) / T of that mixture, so the training
    loop draws exactly as many random numbers as plain uniform sampling (``focus_weight = 0`` is the identity).
    """
    lo, hi = focus
    t = torch.arange(num_train_timesteps, dtype=torch.float64)
    cdf = (1 - focus_weight) * (t + 1) / num_train_timesteps + focus_weight * ((t + 1 - lo) / (hi - lo)).clamp(0, 1)
    q = (torch.arange(num_train_timesteps, dtype=torch.float64) + 0.5) / num_train_timesteps
    return torch.searchsorted(cdf, q).clamp_max(num_train_timesteps - 1)


def diffuse_with_noise(s: torch.Tensor, levels: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward process at given levels (docs/design.md §3, diffusion schedule).

    Input: s (B, k) latents; levels (B,) abar; gen, the generator of eps. Output: (z, eps), z (B, k) and eps ~ N(0, 1)
    (B, k)."""
    eps = torch.randn(s.shape, generator=gen)
    # z_t = sqrt(abar_t) s + sqrt(1 - abar_t) eps: q(x_t | x_0), DDPM (arXiv 2006.11239) eq. (4)
    return levels.sqrt()[:, None] * s + (1 - levels).sqrt()[:, None] * eps, eps


def diffuse(s: torch.Tensor, levels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """z = sqrt(abar) s + sqrt(1 - abar) eps for s (B, k) and levels (B,)."""
    return diffuse_with_noise(s, levels, gen)[0]
