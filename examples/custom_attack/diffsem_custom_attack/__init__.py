"""A minimal DiffSem attack plugin.

``nearest-centroid`` guesses each intercepted frame's label as the class whose mean latent (from the attacker's own
black-box queries) is closest to sqrt(abar_eff) times it. Train it offline, then point the eavesdropper at it::

    diffsem attack train --attack nearest-centroid --dataset mnist --out my_eve_folder
    python -m eavesdropper --attack nearest-centroid --checkpoints my_eve_folder ...

``always-fails`` raises, to show that a broken plugin is reported by name and does not stop the service.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from diffsem.attacks import Attack
from diffsem.attacks.builtin import query_encoder


class Centroids(nn.Module):
    """The class means of the attacker's query latents, (C, k); a module so ``save_attack`` can store it."""

    def __init__(self, num_classes: int, k: int):
        super().__init__()
        self.register_buffer("centroids", torch.zeros(num_classes, k))


class NearestCentroid(Attack):
    name = "nearest-centroid"
    trainable = True  # load_attack reads <checkpoints>/attacks/nearest-centroid.safetensors; not in `--attacks all`

    def __init__(self, bundle: Any, **options: Any):
        super().__init__(bundle, **options)
        self.means = Centroids(bundle.cfg.num_classes, bundle.cfg.k)

    def module(self) -> nn.Module:
        return self.means

    @torch.no_grad()
    def fit(self, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> dict[str, float]:
        s = query_encoder(self.bundle, images)  # black-box queries through the transmitter
        self.means.centroids.copy_(torch.stack([s[labels == c].mean(0) for c in range(self.bundle.cfg.num_classes)]))
        return {"n": float(len(images))}

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any):
        centroids = self.means.centroids.to(z.device)
        scaled = abar_eff.sqrt()[:, None, None] * centroids[None]  # (B, C, k)
        return ((z[:, None, :] - scaled) ** 2).sum(-1).argmin(1), None


class AlwaysFails(Attack):
    name = "always-fails"

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any):
        raise RuntimeError("this plugin always fails")
