"""All trained parts of one DiffSem system, loaded together from a checkpoint folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DModel
from torch import nn

from diffsem.checkpoints import check_card, load_weights
from diffsem.config import ModelConfig, build
from diffsem.diffusion import alphas_cumprod
from diffsem.errors import CheckpointError
from diffsem.models import ImageJudge, NoiseAwareClassifier, SemanticEncoder, make_unet

PARTS = ("encoder", "classifier", "channel_classifier", "unet", "judge", "eavesdropper")
# What a black-box eavesdropper process may read: its own classifier and the bundle's judge (with the other judges of
# the panel under judges/, diffsem.judges) that score its reconstructions, never the transmitter's encoder or the
# receiver's models.
EAVESDROPPER_PARTS = ("judge", "eavesdropper")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class ModelBundle:
    """cfg; encoder; classifier (noise-aware, every level), channel_classifier (channel SNR range only) and unet
    (receiver side); judge; eavesdropper (the core's simple attacker)."""

    cfg: ModelConfig
    encoder: SemanticEncoder
    classifier: NoiseAwareClassifier
    channel_classifier: NoiseAwareClassifier
    unet: UNet2DModel
    judge: ImageJudge
    eavesdropper: NoiseAwareClassifier
    model_id: str
    device: torch.device = torch.device("cpu")
    cards: dict[str, Any] = field(default_factory=dict)

    @property
    def abar(self) -> torch.Tensor:
        """abar_t, float64 (T,)."""
        return alphas_cumprod(self.cfg)

    @classmethod
    def fresh(cls, cfg: ModelConfig, model_id: str = "untrained") -> ModelBundle:
        return cls(cfg, SemanticEncoder(cfg), NoiseAwareClassifier(cfg), NoiseAwareClassifier(cfg), make_unet(cfg),
                   ImageJudge(cfg), NoiseAwareClassifier(cfg), model_id)

    def modules(self) -> dict[str, nn.Module]:
        return {p: getattr(self, p) for p in PARTS}

    def to(self, device: torch.device) -> ModelBundle:
        for m in self.modules().values():
            m.to(device).eval()
        self.device = device
        return self


class NotLoaded(nn.Module):
    """Stands in for a part that this process did not load (see ``load_bundle(parts=...)``); calling it raises."""

    def __init__(self, part: str, folder: Path):
        super().__init__()
        self.part, self.folder = part, folder

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise CheckpointError(f"{self.folder}: the {self.part!r} part was not loaded by this process "
                              f"(it loads only what its role may see)")


def load_bundle(folder: Path, expected: ModelConfig | None = None, model_id: str | None = None,
                device: str = "auto", parts: tuple[str, ...] = PARTS) -> ModelBundle:
    """Load ``parts`` (default: all) from ``folder`` (``bundle.json``, ``<part>.safetensors`` + ``<part>.json``),
    checking the cards. Parts left out become :class:`NotLoaded`, so a black-box eavesdropper can run from a folder
    that holds only ``bundle.json`` and its own parts, without the transmitter's weights.

    ``expected``/``model_id``, when given, must match the stored cards; a mismatch names both sides.
    """
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise CheckpointError(f"unknown checkpoint part(s) {unknown}; known parts: {', '.join(PARTS)}")
    manifest = folder / "bundle.json"
    if not manifest.exists():
        raise CheckpointError(f"{folder}: no bundle.json; train one with `diffsem train --out {folder}`")
    meta = json.loads(manifest.read_text())
    check_card(folder, meta, expected, model_id)
    cfg = build(ModelConfig, **meta["config"])
    bundle = ModelBundle.fresh(cfg, meta["model_id"])
    for part, module in bundle.modules().items():
        if part in parts:
            bundle.cards[part] = load_weights(module, folder / f"{part}.safetensors", cfg, meta["model_id"])
        else:
            setattr(bundle, part, NotLoaded(part, folder))
    return bundle.to(pick_device(device))


@torch.no_grad()
def encode_all(bundle: ModelBundle, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Latents s (N, k) on the bundle's device for images (N, 1, 28, 28) on any device."""
    bundle.encoder.eval()
    return torch.cat([bundle.encoder(images[i:i + batch].to(bundle.device)) for i in range(0, len(images), batch)])
