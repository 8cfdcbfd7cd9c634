"""A generative-prior inversion (``genprior-inversion``, threat model ``white-box``): the white-box attack's
optimisation, run inside a generative model of the data instead of over free pixels, as in GAN-prior model
inversion (Zhang et al., "The Secret Revealer", CVPR 2020) and its successors.

The prior is a small convolutional VAE (Kingma & Welling 2014) trained on the attacker's auxiliary split alone
(no query, no transmitter weights: those come in only at attack time). To attack, the latent code w (d = 16) of
the VAE's decoder G is set to the MAP estimate under the public noise statistics of the intercepted frame,

    w* = argmin_w  ||z − √abar · E(G(w))||² / (2 (1 − abar))  +  ||w||² / 2,

the Gaussian likelihood of z = √abar s + √(1 − abar) ε (docs/design.md §3) through the transmitter's encoder E, plus
the VAE's standard normal prior on w. Adam from :data:`RESTARTS` starts (w = 0 and random draws), keeping each
frame's best. The reconstruction G(w*) is always an image the prior finds plausible: where the frame carries
little, it is a clean digit of the *wrong* class rather than strokes on noise, which is what a person is shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffsem.attacks.base import Attack, AttackResult
from diffsem.checkpoints import load_weights
from diffsem.errors import ConfigError
from diffsem.fit import fit
from diffsem.models import SemanticEncoder

LATENT_DIM = 16
RESTARTS = 2


class ImageVAE(nn.Module):
    """A convolutional VAE on images (B, 1, 28, 28) in [0, 1]: two strided convolutions to (mu, log var) of a
    ``latent_dim`` code, and their transposes back (:meth:`decode`: codes (B, d) -> images (B, 1, 28, 28))."""

    def __init__(self, latent_dim: int = LATENT_DIM):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 7 * 7, 2 * latent_dim))
        self.dec = nn.Sequential(nn.Linear(latent_dim, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def decode(self, w: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(w))

    def loss(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The negative ELBO per image (nats): Bernoulli reconstruction plus KL to N(0, I)."""
        mu, logvar = self.enc(x).chunk(2, dim=1)
        w = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        rec = F.binary_cross_entropy_with_logits(self.dec(w), x, reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
        return rec + kl


class GenerativePriorInversion(Attack):
    """MAP inversion through the transmitter's encoder inside a VAE trained on the auxiliary split."""

    name = "genprior-inversion"
    trainable = True
    needs_transmitter = True
    threat_model = "white-box"

    def __init__(self, bundle: Any, transmitter_checkpoint: str | Path | None = None, steps: int = 150,
                 lr: float = 0.05, **options: Any):
        super().__init__(bundle, transmitter_checkpoint=None if transmitter_checkpoint is None else str(transmitter_checkpoint),
                         steps=steps, lr=lr, **options)
        self.vae = ImageVAE().to(self.device).eval()
        self.steps, self.lr = steps, lr
        self.encoder: nn.Module | None = None
        if transmitter_checkpoint is not None:  # training the prior needs no transmitter weights
            folder = Path(transmitter_checkpoint)
            self.encoder = SemanticEncoder(bundle.cfg)
            load_weights(self.encoder, folder / "encoder.safetensors" if folder.is_dir() else folder, bundle.cfg)
            self.encoder.to(self.device).eval().requires_grad_(False)

    def module(self) -> nn.Module:
        return self.vae

    def fit(self, images: torch.Tensor, labels: torch.Tensor, epochs: int = 10, batch: int = 128, lr: float = 2e-3,
            seed: int = 0, **kw: Any) -> dict[str, float]:
        """Train the prior on the auxiliary images (N, 1, 28, 28) alone (labels unused)."""
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        vae = self.vae.cpu()
        res = fit(vae, lambda idx: vae.loss(images[idx], gen), len(images), gen, epochs, batch, lr, f"{self.name} prior")
        vae.to(self.device).eval()
        return {"neg_elbo_nats": res.loss}

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        if self.encoder is None:
            raise ConfigError(f"attack {self.name!r} reads the transmitter's encoder weights: load it with "
                              "transmitter_checkpoint (CLI: --transmitter-checkpoint)")
        dev = self.device
        b = z.shape[0]
        z = z.to(dev).repeat(RESTARTS, 1)
        ab = abar_eff.to(dev).reshape(-1, 1).clamp(1e-4, 1.0).repeat(RESTARTS, 1)
        var = (1 - ab).clamp_min(1e-3)
        start = torch.randn(RESTARTS - 1, b, LATENT_DIM, generator=torch.Generator().manual_seed(0))
        w = torch.cat([torch.zeros(1, b, LATENT_DIM), start]).reshape(-1, LATENT_DIM).to(dev).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        self.vae.requires_grad_(False)
        with torch.enable_grad():
            for _ in range(self.steps):
                loss = self._map_loss(w, z, ab, var)
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
        with torch.no_grad():
            final = self._map_loss(w, z, ab, var).reshape(RESTARTS, b)
            best = final.argmin(0)
            images = self.vae.decode(w).reshape(RESTARTS, b, 1, 28, 28)[best, torch.arange(b)]
        return None, images.cpu()

    def _map_loss(self, w: torch.Tensor, z: torch.Tensor, ab: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """The negative log posterior of each code (B,), up to a constant (the module docstring's formula)."""
        assert self.encoder is not None
        s = self.encoder(self.vae.decode(w))
        return ((z - ab.sqrt() * s) ** 2 / (2 * var)).sum(1) + 0.5 * w.pow(2).sum(1)
