"""Networks: semantic encoder, noise-aware latent classifier, latent U-Net, and the independent image judge."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from diffsem.config import ModelConfig


def power_normalise(s: torch.Tensor) -> torch.Tensor:
    """Scale each row of (B, k) so that mean(s_i^2) = 1 (unit power per real dimension)."""
    return s * torch.rsqrt(s.pow(2).mean(dim=1, keepdim=True).clamp_min(1e-12))


class SemanticEncoder(nn.Module):
    """Image (B, 1, 28, 28) in [0, 1] -> latent s (B, k), unit power per real dim.

    The image is zero-padded to 32x32 and downsampled twice to an 8x8 map with k/64 channels.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.ZeroPad2d(2),
            nn.Conv2d(1, 32, 3, padding=1), nn.GELU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(128, cfg.latent_channels, 3, padding=1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return power_normalise(self.net(images).flatten(1))


class NoiseAwareClassifier(nn.Module):
    """Classify a noisy latent z_t (B, k) given its noise level abar (B,) -> logits (B, num_classes).

    The noise level enters as two constant feature maps, sqrt(abar) and sqrt(1 - abar), so one network
    serves every SNR and privacy level; abar = 1 means a clean (or denoised) latent.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.latent_shape = cfg.latent_shape
        c = cfg.latent_channels
        self.features = nn.Sequential(
            nn.Conv2d(c + 2, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.GELU(),
            nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, 128), nn.GELU(), nn.Linear(128, cfg.num_classes))

    def forward(self, z: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        level = torch.as_tensor(abar, dtype=z.dtype, device=z.device).expand(b).reshape(b, 1, 1, 1)
        maps = torch.cat([level.sqrt(), (1 - level).clamp_min(0).sqrt()], dim=1).expand(b, 2, *self.latent_shape[1:])
        return self.head(self.features(torch.cat([z.reshape(b, *self.latent_shape), maps], dim=1)))


class ImageJudge(nn.Module):
    """Independent judge: a LeNet-style CNN with batch norm and max pooling on images (B, 1, 28, 28).

    It never sees latents and shares no weights or architecture with :class:`NoiseAwareClassifier`, so an
    attacker's judged accuracy is not an artefact of the receiver's own classifier.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, cfg.num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def make_unet(cfg: ModelConfig) -> UNet2DModel:
    """Class-conditional epsilon-predicting U-Net over the (k/64, 8, 8) latent.

    ``num_class_embeds = num_classes + 1``: index ``cfg.null_label`` is the reserved 'no label' used for the
    unconditional path (trained by label dropout).
    """
    levels = len(cfg.unet_widths)
    return UNet2DModel(
        sample_size=8, in_channels=cfg.latent_channels, out_channels=cfg.latent_channels,
        block_out_channels=cfg.unet_widths, layers_per_block=cfg.unet_layers_per_block,
        down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
        up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
        num_class_embeds=cfg.num_classes + 1, norm_num_groups=32,
    )
