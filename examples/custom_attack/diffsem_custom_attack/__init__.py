"""A minimal DiffSem attack plugin.

``nearest-centroid`` guesses each intercepted frame's label as the class whose mean latent (from the attacker's own
black-box queries) is closest to sqrt(abar_eff) times it. Without ``fit`` it uses the bundle's feature classifier's
guesses as a fallback, so it also runs straight away in the live eavesdropper service.
``always-fails`` raises, to show that a broken plugin is reported by name and does not stop the service.
"""

from __future__ import annotations

from typing import Any

import torch

from diffsem.attacks import Attack


class NearestCentroid(Attack):
    name = "nearest-centroid"

    def __init__(self, bundle: Any, **options: Any):
        super().__init__(bundle, **options)
        self.centroids: torch.Tensor | None = None

    @torch.no_grad()
    def fit(self, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> dict[str, float]:
        s = self.bundle.encoder(images.to(self.device)).cpu()  # black-box queries
        self.centroids = torch.stack([s[labels == c].mean(0) for c in range(self.bundle.cfg.num_classes)])
        return {"n": float(len(images))}

    @torch.no_grad()
    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any):
        if self.centroids is None:
            self.fit(*_default_aux(self.bundle))
        assert self.centroids is not None
        scaled = abar_eff.sqrt()[:, None] * self.centroids[None]  # (B, C, k)
        return ((z[:, None, :] - scaled) ** 2).sum(-1).argmin(1), None


class AlwaysFails(Attack):
    name = "always-fails"

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any):
        raise RuntimeError("this plugin always fails")


def _default_aux(bundle: Any) -> tuple[torch.Tensor, torch.Tensor]:
    from diffsem.data import load_split, transmitter_split

    images, labels = load_split(bundle.cfg.dataset, "train")
    _, aux = transmitter_split(len(images))
    return images[aux[:2000]], labels[aux[:2000]]
