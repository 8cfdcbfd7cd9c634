"""Networks: semantic encoder, noise-aware latent classifier, latent U-Net, and the image judges (docs/design.md §4)."""

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
    """The bundle's judge (``cnn`` in the panel of judges): a LeNet-style CNN with batch norm and max pooling on
    images (B, 1, 28, 28).

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


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or strided 1x1) shortcut, as in ResNet's basic block."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class ResidualJudge(nn.Module):
    """A deeper judge: a ResNet-style CNN (stem plus three stages of two residual blocks, 16/32/64 channels at
    28/14/7 px), global average pooling, one linear layer. Images (B, 1, 28, 28) -> logits (B, num_classes)."""

    def __init__(self, cfg: ModelConfig, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.net = nn.Sequential(
            nn.Conv2d(1, w1, 3, padding=1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(),
            _ResidualBlock(w1, w1), _ResidualBlock(w1, w1),
            _ResidualBlock(w1, w2, 2), _ResidualBlock(w2, w2),
            _ResidualBlock(w2, w3, 2), _ResidualBlock(w3, w3),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w3, cfg.num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class PixelMLPJudge(nn.Module):
    """A judge with no convolution at all: an MLP on the 784 pixels (two hidden layers of 512, dropout), so it
    shares no spatial inductive bias with the CNN judges. Images (B, 1, 28, 28) -> logits (B, num_classes)."""

    def __init__(self, cfg: ModelConfig, hidden: int = 512):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, cfg.num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class StridedJudge(nn.Module):
    """A small strided CNN with no pooling, batch norm or dropout: two 4x4 stride-2 convolutions (``widths``
    channels, 28 -> 14 -> 7 px) and one hidden layer, the network Wong, Rice & Kolter (2020) train adversarially on
    MNIST. Cheap enough to train with FGSM on a CPU (the ``robust`` judge). Images (B, 1, 28, 28) -> logits
    (B, ``outputs``, default num_classes); :meth:`features` is the hidden layer (B, hidden), where the k-NN measure
    looks for neighbours (:mod:`diffsem.neighbours`)."""

    abstains = False

    def __init__(self, cfg: ModelConfig, widths: tuple[int, int] = (16, 32), hidden: int = 100,
                 outputs: int | None = None):
        super().__init__()
        w1, w2 = widths
        self.body = nn.Sequential(
            nn.Conv2d(1, w1, 4, 2, 1), nn.ReLU(), nn.Conv2d(w1, w2, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(w2 * 7 * 7, hidden), nn.ReLU(),
        )
        self.head = nn.Linear(hidden, outputs or cfg.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


class AbstainingJudge(StridedJudge):
    """A judge that can say "can't tell": a wider :class:`StridedJudge` (32/64 channels, 256 hidden) with one output
    more than there are classes, the **reject** class (the last logit), trained on clean images and on
    out-of-distribution negatives (:mod:`diffsem.abstain`). Images (B, 1, 28, 28) -> logits (B, num_classes + 1);
    :func:`diffsem.judges.decide` turns the reject class into the label ``ABSTAIN``."""

    abstains = True

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, widths=(32, 64), hidden=256, outputs=cfg.num_classes + 1)


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


ABSTAIN = -1  # an abstaining judge's label for "can't tell" (never a class, so never correct)


def decide(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """A judge's labels (B,) int64 of images (B, 1, 28, 28): the argmax class, or :data:`ABSTAIN` where an
    abstaining judge picks its reject class (its last output)."""
    logits = judge(images)
    labels = logits.argmax(1)
    if getattr(judge, "abstains", False):
        labels = labels.masked_fill(labels == logits.shape[1] - 1, ABSTAIN)
    return labels
