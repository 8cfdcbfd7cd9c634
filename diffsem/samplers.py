"""Noise levels drawn for training: every sampler of abar per sample (B,) in one place.

A level is the abar of a diffusion latent z = sqrt(abar) s + sqrt(1 - abar) eps. A plain link at SNR gives
abar = 1 / (1 + N0) (no self-noise, unit transmit power); self-noise at t* then a link gives abar_t* / (1 + N0).
Each sampler's draws, in order, are part of what makes training reproducible: do not reorder them.
"""

from __future__ import annotations

import torch

from diffsem.config import CHANNEL_TRAINING_SNR_DB


def link_level(snr_db: float | torch.Tensor) -> torch.Tensor:
    """abar = 1 / (1 + N0) of a plain link at ``snr_db`` (N0 = 10^(-snr/10)); shape and dtype follow ``snr_db``."""
    return 1.0 / (1.0 + torch.pow(10.0, -torch.as_tensor(snr_db) / 10.0))


def _some_clean(levels: torch.Tensor, clean: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """Replace each level by ``clean`` with probability ``fraction`` (one uniform draw per sample)."""
    return torch.where(torch.rand(len(levels), generator=gen) < fraction, clean, levels)


def schedule_levels(b: int, abar: torch.Tensor, clean_fraction: float, gen: torch.Generator) -> torch.Tensor:
    """abar_t with t ~ U[0, T), or 1.0 (clean) with probability ``clean_fraction``: the noise-aware classifiers."""
    t = torch.randint(0, len(abar), (b,), generator=gen)
    levels = abar[t].to(torch.float32)
    return _some_clean(levels, torch.ones_like(levels), clean_fraction, gen)


def channel_levels(b: int, clean_fraction: float, gen: torch.Generator) -> torch.Tensor:
    """A plain link with SNR ~ U[0, 20] dB (``CHANNEL_TRAINING_SNR_DB``), or clean: the ``channel`` classifier."""
    lo, hi = CHANNEL_TRAINING_SNR_DB
    levels = link_level(lo + (hi - lo) * torch.rand(b, generator=gen))
    return _some_clean(levels, torch.ones_like(levels), clean_fraction, gen)


def attacker_levels(b: int, abar: torch.Tensor, gen: torch.Generator, train_snr_db: float | None = None,
                    clean_fraction: float = 0.5) -> torch.Tensor:
    """What an attacker trains on: ``train_snr_db`` -> that plain link's level for every sample; otherwise
    abar_t / (1 + N0) with t ~ U[0, T) and SNR ~ U[0, 30] dB, or (``clean_fraction``) the link alone."""
    if train_snr_db is not None:
        return torch.full((b,), float(link_level(torch.tensor(float(train_snr_db), dtype=torch.float64))))
    t = torch.randint(0, len(abar), (b,), generator=gen)
    link = link_level(30 * torch.rand(b, generator=gen))
    a = abar[t].to(torch.float32)
    levels = a / (a + (1 - a) + 1 / link - 1)  # = a * link; written as a / (1 + N0), which the checkpoints were trained on
    return _some_clean(levels, link, clean_fraction, gen)


def light_levels(b: int, gen: torch.Generator, max_noise: float = 0.1) -> torch.Tensor:
    """abar ~ U(1 - max_noise, 1]: lightly noised latents (the adaptive attacker's decoder and classifier heads)."""
    return 1.0 - max_noise * torch.rand(b, generator=gen)
