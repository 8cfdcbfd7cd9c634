"""The built-in attacks (docs/design.md §4). Every trainable one learns from the attacker's *own* auxiliary split,
encoded through black-box queries to the transmitter's encoder and passed through the attacker's own channel:
either across the whole range of noise levels a listener can see (self-noise of any t* plus any link), or at one
fixed link SNR (``train_snr_db``, no self-noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn

from diffsem.attacks.base import Attack, AttackResult, query_encoder
from diffsem.checkpoints import load_weights
from diffsem.diffusion import diffuse, diffuse_with_noise
from diffsem.fit import fit
from diffsem.models import NoiseAwareClassifier, SemanticEncoder
from diffsem.samplers import attacker_levels, light_levels


class LatentDecoder(nn.Module):
    """Symbols z (B, k) plus the public noise level abar_eff (B,) -> image (B, 1, 28, 28) in [0, 1]."""

    def __init__(self, k: int, hidden: int = 256):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(k + 2, hidden), nn.ReLU(), nn.Linear(hidden, 32 * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def forward(self, z: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        lv = abar.to(z.dtype).reshape(-1, 1).expand(z.shape[0], 1)
        h = self.fc(torch.cat([z, lv.sqrt(), (1 - lv).clamp_min(0).sqrt()], 1)).reshape(-1, 32, 7, 7)
        return torch.sigmoid(self.up(h))


def fit_latent_decoder(decoder: LatentDecoder, s: torch.Tensor, images: torch.Tensor, abar: torch.Tensor,
                       gen: torch.Generator, epochs: int, batch: int, lr: float, train_snr_db: float | None,
                       name: str) -> float:
    """Train ``decoder`` (on the CPU) to map latents s (N, k), noised at the levels attackers train on
    (:func:`~diffsem.samplers.attacker_levels`), back to their images (N, 1, 28, 28); return the last epoch's BCE."""

    def step(idx: torch.Tensor) -> torch.Tensor:
        lv = attacker_levels(len(idx), abar, gen, train_snr_db)
        return F.binary_cross_entropy(decoder(diffuse(s[idx], lv, gen), lv), images[idx])

    return fit(decoder, step, len(images), gen, epochs, batch, lr, name).loss


class FeatureClassifier(Attack):
    """A noise-aware classifier on intercepted symbols (``bundle.eavesdropper``, trained by ``diffsem train`` on the
    attacker's auxiliary split): the upper bound on task leakage. Labels only."""

    name = "feature-classifier"
    cost = 0.15  # label only, no judging: 1-2 s against 10 s per 4000 images (BENCHMARKS, Ray)
    in_default_zoo = True

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        dev = self.device
        return self.bundle.eavesdropper(z.to(dev), abar_eff.to(dev)).argmax(1).cpu(), None


class InversionDecoder(Attack):
    """Black-box model inversion: a decoder from intercepted symbols to images, trained on (query, image) pairs of
    the attacker's auxiliary data through its own channel. Reconstructions only (the judge labels them)."""

    name = "inversion-decoder"
    trainable = True
    in_default_zoo = True

    def __init__(self, bundle: Any, train_snr_db: float | None = None, **options: Any):
        super().__init__(bundle, train_snr_db=train_snr_db, **options)
        self.train_snr_db = train_snr_db
        self.decoder = LatentDecoder(bundle.cfg.k).to(self.device).eval()

    def module(self) -> nn.Module:
        return self.decoder

    def fit(self, images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch: int = 128, lr: float = 2e-3,
            seed: int = 0, **kw: Any) -> dict[str, float]:
        gen = torch.Generator().manual_seed(seed)
        loss = fit_latent_decoder(self.decoder.cpu(), query_encoder(self.bundle, images), images, self.bundle.abar,
                                  gen, epochs, batch, lr, self.train_snr_db, self.name)
        self.decoder.to(self.device)
        return {"train_bce": loss}

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        dev = self.device
        return None, self.decoder(z.to(dev), abar_eff.to(dev)).cpu()


WHITEBOX_INIT = -2.0  # logit of the starting image: dark, like most pixels of MNIST-style data


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


class WhiteboxInversion(Attack):
    """Optimise images x so that sqrt(abar_eff) enc(x) explains the intercepted z under the public noise
    statistics (Gaussian likelihood with variance 1 - abar_eff), with a total-variation prior.

    It reads the transmitter's encoder weights from ``transmitter_checkpoint`` (a folder with encoder.safetensors,
    or the file), so :func:`diffsem.attacks.load_attack` builds it only when the caller passes one."""

    name = "whitebox-inversion"
    cost = 50.0  # 0.14-0.16 s per image on one thread, the inversion decoder's about 2.5 ms (BENCHMARKS, Ray)
    needs_transmitter = True
    in_default_zoo = True
    threat_model = "white-box"

    def __init__(self, bundle: Any, transmitter_checkpoint: str | Path, steps: int = 150, tv_weight: float = 0.05,
                 lr: float = 0.1, **options: Any):
        super().__init__(bundle, transmitter_checkpoint=str(transmitter_checkpoint), steps=steps, tv_weight=tv_weight,
                         lr=lr, **options)
        folder = Path(transmitter_checkpoint)
        path = folder / "encoder.safetensors" if folder.is_dir() else folder
        self.encoder = SemanticEncoder(bundle.cfg)
        load_weights(self.encoder, path, bundle.cfg)
        self.encoder.to(self.device).eval().requires_grad_(False)
        self.steps, self.tv_weight, self.lr = steps, tv_weight, lr

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        dev = self.device
        z, ab = z.to(dev), abar_eff.to(dev).reshape(-1, 1).clamp(1e-4, 1.0)
        logits = torch.full((z.shape[0], 1, 28, 28), WHITEBOX_INIT, device=dev, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=self.lr)
        var = (1 - ab).clamp_min(1e-3)
        with torch.enable_grad():
            for _ in range(self.steps):
                x = torch.sigmoid(logits)
                nll = ((z - ab.sqrt() * self.encoder(x)) ** 2 / var).mean()
                loss = nll + self.tv_weight * total_variation(x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return None, torch.sigmoid(logits).detach().cpu()


class _AdaptiveParts(nn.Module):
    def __init__(self, cfg: Any):
        super().__init__()
        self.unet = UNet2DModel(sample_size=8, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
                                block_out_channels=(32, 64), layers_per_block=1,
                                down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                                norm_num_groups=32)
        self.decoder = LatentDecoder(cfg.k)
        self.classifier = NoiseAwareClassifier(cfg)


class AdaptiveDiffusion(Attack):
    """An attacker who knows the DiffSem scheme: it trains its own small latent denoiser (a diffusers U-Net,
    epsilon prediction) on its queried latents, then denoises an intercepted z_t in one x0 prediction from the
    timestep nearest abar_eff, decodes the estimate to an image and classifies it with its own latent classifier."""

    name = "adaptive-diffusion"
    cost = 2.0  # 440-570 s against 215-300 s per setting (docs/results)
    trainable = True
    in_default_zoo = True

    def __init__(self, bundle: Any, **options: Any):
        super().__init__(bundle, **options)
        self.parts = _AdaptiveParts(bundle.cfg).to(self.device).eval()

    def module(self) -> nn.Module:
        return self.parts

    def fit(self, images: torch.Tensor, labels: torch.Tensor, epochs: int = 3, batch: int = 128, lr: float = 2e-3,
            seed: int = 0, **kw: Any) -> dict[str, float]:
        gen = torch.Generator().manual_seed(seed)
        s = query_encoder(self.bundle, images)
        abar = self.bundle.abar
        cfg = self.bundle.cfg
        p = self.parts.cpu()

        def unet_step(idx: torch.Tensor) -> torch.Tensor:
            shape = (len(idx), *cfg.latent_shape)
            t = torch.randint(0, cfg.num_train_timesteps, (len(idx),), generator=gen)
            zt, eps = diffuse_with_noise(s[idx], abar[t].to(torch.float32), gen)
            return F.mse_loss(p.unet(zt.reshape(shape), t).sample, eps.reshape(shape))

        def head_step(idx: torch.Tensor) -> torch.Tensor:  # decoder + classifier on lightly noised latents
            lv = light_levels(len(idx), gen)
            zz = diffuse(s[idx], lv, gen)
            return (F.binary_cross_entropy(p.decoder(zz, torch.ones_like(lv)), images[idx])
                    + F.cross_entropy(p.classifier(zz, torch.ones_like(lv)), labels[idx]))

        m1 = fit(p.unet, unet_step, len(images), gen, epochs, batch, lr, f"{self.name} unet")
        m2 = fit(nn.ModuleList([p.decoder, p.classifier]), head_step, len(images), gen, epochs, batch, lr,
                 f"{self.name} heads")
        p.to(self.device).eval()
        return {"unet_mse": m1.loss, "head_loss": m2.loss}

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        dev = self.device
        cfg = self.bundle.cfg
        abar = self.bundle.abar.to(torch.float32)
        ab = abar_eff.to(torch.float32).clamp(1e-5, 1.0)
        t = (abar[None, :] - ab[:, None]).abs().argmin(1)
        b = z.shape[0]
        zt = z.to(dev).reshape(b, *cfg.latent_shape)
        a = ab.to(dev).reshape(b, 1, 1, 1)
        eps = self.parts.unet(zt, t.to(dev)).sample
        x0 = ((zt - (1 - a).sqrt() * eps) / a.sqrt()).reshape(b, -1)
        x0 = torch.where(ab.to(dev)[:, None] > 0.999, z.to(dev), x0)  # clean enough: keep the symbols as they are
        ones = torch.ones(b, device=dev)
        return self.parts.classifier(x0, ones).argmax(1).cpu(), self.parts.decoder(x0, ones).cpu()
