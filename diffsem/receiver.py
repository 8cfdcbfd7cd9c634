"""The legitimate receiver's decoding modes (docs/design.md §3).

- ``direct``: the noise-aware classifier on z_t at abar_eff (no diffusion; 0 U-Net evaluations).
- ``denoise``: ``steps`` reverse steps from t_eff to 0 with the unconditional U-Net (null label), then the
  classifier on the result at abar = 1. ``steps=1`` is a single x0 prediction.
- ``selfref``: the ``direct`` label conditions the U-Net (self-referential label embedding); the denoised
  latent is classified. ``iterations > 1`` feeds each new label back in. With the matched classifier it almost
  always returns the ``direct`` label, but not always (2 of 2000 test images differ at 10 dB, t* = 300:
  ``benchmarks/selfref_vs_direct.py``, BENCHMARKS.md), so its U-Net pass is kept.

The reverse step is the DDIM update (eta = 0) or its DDPM-like ancestral form (eta = 1), applied per sample:
diffusers' ``DDIMScheduler.step`` takes one scalar timestep for the whole batch, while the live receiver
batches frames from different channel states, hence different t_eff. ``tests/test_receiver.py`` checks
:func:`ddim_step` against ``DDIMScheduler.step`` for a shared timestep.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsem.bundle import ModelBundle
from diffsem.config import CLASSIFIERS, DECODE_MODES
from diffsem.diffusion import nearest_timestep
from diffsem.errors import ConfigError


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, abar_t: torch.Tensor, abar_prev: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step x_t -> x_prev (docs/design.md §3, receiver modes).

    Input: x_t, eps (the U-Net's noise estimate) and noise (eta > 0) (B, C, H, W); abar_t, abar_prev (B,).
    Output: x_prev (B, C, H, W)."""
    a_t = abar_t.reshape(-1, 1, 1, 1).to(x_t.dtype)
    a_p = abar_prev.reshape(-1, 1, 1, 1).to(x_t.dtype)
    x0 = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()  # "predicted x0", DDIM (arXiv 2010.02502) eq. (12)
    sigma = eta * ((1 - a_p) / (1 - a_t) * (1 - a_t / a_p)).clamp_min(0).sqrt()  # sigma_t(eta), DDIM eq. (16)
    out = a_p.sqrt() * x0 + (1 - a_p - sigma**2).clamp_min(0).sqrt() * eps  # DDIM eq. (12), its last term below
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
    """Decodes normalised received latents with one of the bundle's classifiers and its U-Net.

    ``classifier``: ``matched``, the noise-aware classifier trained at every noise level (the strongest
    no-diffusion receiver), or ``channel``, the plain task-oriented classifier trained only over the channel's
    SNR range (0-20 dB, no self-noise), which is the paper's baseline. ``steps`` reverse steps per diffusion
    decode; ``eta`` 0 for DDIM and 1 for DDPM-like sampling.
    """

    def __init__(self, bundle: ModelBundle, steps: int = 1, eta: float = 0.0, selfref_iterations: int = 1,
                 classifier: str = "matched"):
        if steps < 1:
            raise ConfigError(f"steps={steps} must be >= 1")
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"eta={eta} must be in [0, 1] (0 = DDIM, 1 = DDPM-like)")
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"unknown classifier {classifier!r}; use one of {', '.join(CLASSIFIERS)}")
        self.bundle = bundle
        self.steps = steps
        self.eta = eta
        self.selfref_iterations = selfref_iterations
        self.classifier = classifier
        self.abar = bundle.abar.to(torch.float32)

    @property
    def device(self) -> torch.device:
        return self.bundle.device

    def _classify(self, z: torch.Tensor, abar: torch.Tensor, classifier: str) -> torch.Tensor:
        net = self.bundle.classifier if classifier == "matched" else self.bundle.channel_classifier
        return net(z, abar)

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
    def decode_many(self, z: torch.Tensor, abar_eff: torch.Tensor, modes: list[str],
                    classifiers: list[str]) -> dict[tuple[str, str], DecodeResult]:
        """Every (classifier, mode) decision for z (B, k) at abar_eff (B,), sharing the unconditional denoise."""
        for mode in modes:
            if mode not in DECODE_MODES:
                raise ConfigError(f"unknown decode mode {mode!r}; use one of {', '.join(DECODE_MODES)}")
        z = z.to(self.device, torch.float32)
        level = torch.as_tensor(abar_eff, dtype=torch.float32).expand(z.shape[0]).to(self.device)
        ones = torch.ones(z.shape[0], device=self.device)
        out: dict[tuple[str, str], DecodeResult] = {}
        clean = None
        if "denoise" in modes:
            null = torch.full((z.shape[0],), self.bundle.cfg.null_label, dtype=torch.long)
            clean = self.denoise(z, level, null)
        for clf in classifiers:
            first = self._classify(z, level, clf)
            for mode in modes:
                if mode == "direct":
                    logits, evals = first, 0
                elif mode == "denoise":
                    logits, evals = self._classify(clean, ones, clf), self.steps
                else:
                    logits = first
                    for _ in range(self.selfref_iterations):
                        logits = self._classify(self.denoise(z, level, logits.argmax(1)), ones, clf)
                    evals = self.steps * self.selfref_iterations
                out[(clf, mode)] = DecodeResult(logits.argmax(1).cpu(), logits.cpu(), evals)
        return out

    def decode(self, z: torch.Tensor, abar_eff: torch.Tensor, mode: str) -> DecodeResult:
        """Decide labels for normalised latents z (B, k) at noise levels abar_eff (B,) with this receiver's classifier."""
        return self.decode_many(z, abar_eff, [mode], [self.classifier])[(self.classifier, mode)]
