"""The legitimate receiver's decoding modes (DESIGN.md §3).

- ``direct``: the noise-aware classifier on z_t at abar_eff (no diffusion; 0 U-Net evaluations).
- ``denoise``: ``steps`` reverse steps from t_eff to 0 with the unconditional U-Net (null label), then the
  classifier on the result at abar = 1. ``steps=1`` is a single x0 prediction.
- ``selfref``: the ``direct`` label conditions the U-Net (self-referential label embedding); the denoised
  latent is classified. ``iterations > 1`` feeds each new label back in.

The reverse step is the DDIM update (eta = 0) or its DDPM-like ancestral form (eta = 1), applied per sample:
diffusers' ``DDIMScheduler.step`` takes one scalar timestep for the whole batch, while the live receiver
batches frames from different channel states, hence different t_eff. ``tests/test_receiver.py`` checks
:func:`ddim_step` against ``DDIMScheduler.step`` for a shared timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsem.bundle import ModelBundle
from diffsem.config import DECODE_MODES
from diffsem.diffusion import nearest_timestep
from diffsem.errors import ConfigError


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step x_t -> x_prev (shapes (B, C, H, W)); ``abar_t`` and ``abar_prev`` are (B,)."""
    a_t = abar_t.reshape(-1, 1, 1, 1).to(x_t.dtype)
    a_p = abar_prev.reshape(-1, 1, 1, 1).to(x_t.dtype)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    sigma = eta * ((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)).clamp_min(0).sqrt()
    out = a_p.sqrt() * x0 + (1 - a_p - sigma**2).clamp_min(0).sqrt() * eps
    if eta > 0:
        out = out + sigma * (torch.randn_like(x_t) if noise is None else noise)
    return out


@dataclass
class DecodeResult:
    """labels: (B,) int64 decisions. logits: (B, classes). unet_evals: U-Net evaluations per image."""

    labels: torch.Tensor
    logits: torch.Tensor
    unet_evals: int


class DiffusionReceiver:
    """Decodes normalised received latents with the bundle's classifier and U-Net.

    ``steps`` reverse steps per diffusion decode, ``eta`` 0 for DDIM and 1 for DDPM-like sampling.
    """

    def __init__(self, bundle: ModelBundle, steps: int = 1, eta: float = 0.0, selfref_iterations: int = 1):
        if steps < 1:
            raise ConfigError(f"steps={steps} must be >= 1")
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"eta={eta} must be in [0, 1] (0 = DDIM, 1 = DDPM-like)")
        self.bundle = bundle
        self.steps = steps
        self.eta = eta
        self.selfref_iterations = selfref_iterations
        self.abar = bundle.abar.to(torch.float32)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    @torch.no_grad()
    def denoise(self, z: torch.Tensor, abar_eff: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Reverse process from each sample's nearest timestep to a clean estimate; (B, k) -> (B, k)."""
        b = z.shape[0]
        x = z.reshape(b, *self.bundle.cfg.latent_shape).to(self.device)
        t_eff = nearest_timestep(abar_eff.cpu(), self.bundle.abar).to(self.device)
        abar = self.abar.to(self.device)
        for i in range(self.steps):
            t_i = torch.round(t_eff.float() * (self.steps - i) / self.steps).long()
            t_next = torch.round(t_eff.float() * (self.steps - i - 1) / self.steps).long()
            eps = self.bundle.unet(x, t_i, class_labels=labels.to(self.device)).sample
            a_prev = abar[t_next] if i < self.steps - 1 else torch.ones(b, device=self.device)
            x = ddim_step(x, eps, abar[t_i], a_prev, self.eta)
        return x.reshape(b, -1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, abar_eff: torch.Tensor, mode: str) -> DecodeResult:
        """Decide labels for normalised latents z (B, k) at noise levels abar_eff (B,)."""
        if mode not in DECODE_MODES:
            raise ConfigError(f"unknown decode mode {mode!r}; use one of {', '.join(DECODE_MODES)}")
        clf = self.bundle.classifier
        z = z.to(self.device, torch.float32)
        abar_eff = torch.as_tensor(abar_eff, dtype=torch.float32).expand(z.shape[0])
        logits = clf(z, abar_eff.to(self.device))
        if mode == "direct":
            return DecodeResult(logits.argmax(1).cpu(), logits.cpu(), 0)
        ones = torch.ones(z.shape[0], device=self.device)
        if mode == "denoise":
            null = torch.full((z.shape[0],), self.bundle.cfg.null_label, dtype=torch.long)
            logits = clf(self.denoise(z, abar_eff, null), ones)
            return DecodeResult(logits.argmax(1).cpu(), logits.cpu(), self.steps)
        for _ in range(self.selfref_iterations):
            logits = clf(self.denoise(z, abar_eff, logits.argmax(1)), ones)
        return DecodeResult(logits.argmax(1).cpu(), logits.cpu(), self.steps * self.selfref_iterations)
