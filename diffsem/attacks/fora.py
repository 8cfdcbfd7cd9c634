"""An eavesdropper without an oracle (``fora``, threat model ``none``), after FORA (Xu et al., "A Stealthy
Wolf in Sheep's Clothing: Feature-Oriented Reconstruction Attack", CVPR 2024, arXiv 2405.04115).

Every other trainable attack learns from black-box queries to the transmitter's encoder. A passive eavesdropper in
the field has no such oracle: it has public images of the same kind (its auxiliary split, with labels) and the
frames it intercepts (noisy latents with their public headers, of images it never sees). FORA's answer, here:

1. **A substitute encoder** E' (the transmitter's architecture, which the attacker reads in our source; its own
   weights) learns so that its latents of auxiliary images are distributed as the intercepted ones. Each batch
   noises E'(x) at the levels of a batch of intercepted frames (the level is public: header plus the attacker's
   own SNR) and minimises the multi-kernel MMD² between the two (Gretton et al. 2012, eq. 3, unbiased; Gaussian
   kernels at 1/4 to 4 times the median squared distance), plus a classification loss on E'(x) that keeps the
   latents about the task (FORA's substitute learns the same way through the server's model). Frames received at
   a level below :data:`MIN_ALIGN_LEVEL` carry too little of the latent to align on and are left out.
2. **An inverse network**: a :class:`~diffsem.attacks.builtin.LatentDecoder` from E'(x), noised at the levels the
   attacks train on, back to x, with E' frozen.
3. **Its judge**: ``diffsem attack train`` then trains the attack's adapted judge on its own reconstructions,
   encoded by E' (:meth:`aux_latents`), never by the transmitter.

The intercepted frames come from :func:`diffsem.attacks.run.intercepted_traffic`: the transmitter's own traffic
(images of its split), received at the levels attacks train on. The attack never calls the transmitter's encoder:
a test runs it on a bundle whose encoder raises.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffsem.attacks.base import Attack, AttackResult
from diffsem.attacks.builtin import LatentDecoder, fit_latent_decoder
from diffsem.diffusion import diffuse
from diffsem.errors import ConfigError
from diffsem.fit import fit
from diffsem.models import NoiseAwareClassifier, SemanticEncoder

MIN_ALIGN_LEVEL = 0.5  # intercepted frames below this abar_eff are mostly noise: not used to align distributions
KERNEL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
MMD_WEIGHT = 10.0  # MMD² is O(0.01-0.1) where cross-entropy is O(0.1-1); this puts the two on one scale


def mmd2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unbiased multi-kernel MMD² between samples a (n, d) and b (m, d): Gaussian kernels whose widths are
    :data:`KERNEL_SCALES` times the median squared distance of the pooled sample (detached)."""
    x = torch.cat([a, b])
    d2 = torch.cdist(x, x).pow(2)
    med = d2.detach()[d2.detach() > 0].median()
    k = sum(torch.exp(-d2 / (s * med)) for s in KERNEL_SCALES)
    n, m = len(a), len(b)
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    return ((kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
            - 2 * kab.mean())


class _ForaParts(nn.Module):
    def __init__(self, cfg: Any):
        super().__init__()
        self.encoder = SemanticEncoder(cfg)  # the substitute E'
        self.decoder = LatentDecoder(cfg.k)  # the inverse network


class Fora(Attack):
    """A substitute encoder aligned to the intercepted frames, and an inverse network on it; no query to the
    transmitter. Reconstructions only (the judges label them)."""

    name = "fora"
    trainable = True
    threat_model = "none"
    needs_traffic = True

    def __init__(self, bundle: Any, train_snr_db: float | None = None, **options: Any):
        super().__init__(bundle, train_snr_db=train_snr_db, **options)
        self.train_snr_db = train_snr_db
        self.parts = _ForaParts(bundle.cfg).to(self.device).eval()

    def module(self) -> nn.Module:
        return self.parts

    @torch.no_grad()
    def aux_latents(self, images: torch.Tensor) -> torch.Tensor:
        """The substitute encoder's latents (N, k) of the attacker's own images: no oracle."""
        self.parts.encoder.eval()
        dev = self.device
        return torch.cat([self.parts.encoder(images[i:i + 1024].to(dev)).cpu() for i in range(0, len(images), 1024)])

    def fit(self, images: torch.Tensor, labels: torch.Tensor, traffic: tuple[torch.Tensor, torch.Tensor] | None = None,
            epochs: int = 3, batch: int = 128, lr: float = 2e-3, seed: int = 0, **kw: Any) -> dict[str, Any]:
        """images (N, 1, 28, 28) and labels (N,): the auxiliary split; traffic: intercepted latents (T, k) and their
        levels abar_eff (T,)."""
        if traffic is None:
            raise ConfigError(f"attack {self.name!r} learns from intercepted frames: train it with `diffsem attack "
                              f"train --attack {self.name}` (which intercepts the transmitter's traffic)")
        z, level = traffic
        keep = level >= MIN_ALIGN_LEVEL
        if int(keep.sum()) < 2 * batch:
            raise ConfigError(f"only {int(keep.sum())} intercepted frames at abar_eff >= {MIN_ALIGN_LEVEL}; "
                              f"{self.name!r} needs at least {2 * batch} to align on")
        z, level = z[keep], level[keep]
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # the substitute's and the decoder's initial weights
        self.parts = parts = _ForaParts(self.bundle.cfg)  # fresh weights from the seed, on the CPU
        head = NoiseAwareClassifier(self.bundle.cfg)
        t0 = time.time()
        terms = {"mmd2": 0.0, "ce": 0.0, "n": 0}
        history: list[dict[str, float]] = []

        def epoch_means(epoch: int, result: Any) -> None:
            n = max(terms["n"], 1)
            history.append({"mmd2": terms["mmd2"] / n, "ce": terms["ce"] / n})
            terms.update(mmd2=0.0, ce=0.0, n=0)

        def align_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pick = torch.randint(0, len(z), (len(idx),), generator=gen)
            lv = level[pick]
            sub = diffuse(parts.encoder(images[idx]), lv, gen)
            logits = head(sub, lv)
            ce, mmd = F.cross_entropy(logits, labels[idx]), mmd2(sub, z[pick])
            terms["mmd2"] += float(mmd.detach()) * len(idx)
            terms["ce"] += float(ce.detach()) * len(idx)
            terms["n"] += len(idx)
            return ce + MMD_WEIGHT * mmd, (logits.argmax(1) == labels[idx]).sum()

        aligned = fit(nn.ModuleList([parts.encoder, head]), align_step, len(images), gen, epochs, batch, lr,
                      f"{self.name} substitute", on_epoch=epoch_means)
        align_seconds = time.time() - t0
        s = self.aux_latents(images)
        bce = fit_latent_decoder(parts.decoder, s, images, self.bundle.abar, gen, epochs, batch, lr, self.train_snr_db,
                                 f"{self.name} inverse network")
        parts.to(self.device).eval()
        return {"substitute_train_acc": aligned.accuracy, "align_per_epoch": history, "train_bce": bce,
                "align_seconds": round(align_seconds, 1), "traffic_frames_used": len(z)}

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        dev = self.device
        return None, self.parts.decoder(z.to(dev), abar_eff.to(dev)).cpu()
