"""Attacks an eavesdropper can run, found by name.

An attack is built from the model bundle and the attacker's options, and maps a batch of intercepted
frames to label guesses and/or image reconstructions::

    class MyAttack:
        name = "my-attack"
        def __init__(self, bundle: ModelBundle, **options): ...
        def attack(self, batch: ReceivedBatch) -> AttackOutput: ...

Register it with ``@register("my-attack")`` in this module, or from another package through the entry-point
group ``diffsem.attacks`` (``my-attack = my_pkg.attacks:MyAttack``), so a user adds one without touching the
project. :func:`make_attack` with an unknown name raises ``ConfigError`` listing the known ones.

``ReceivedBatch`` (:mod:`services_common.frames`) holds the intercepted latents y (B, k), the attacker's own
link noise sigma2 (B,), the public headers, and z_t / abar_eff from the core's ``listener_view``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

import torch

from diffsem.bundle import ModelBundle
from diffsem.errors import ConfigError
from services_common.frames import ReceivedBatch

ENTRY_POINT_GROUP = "diffsem.attacks"


@dataclass
class AttackOutput:
    """labels: (B,) int64 guesses or None; reconstructions: (B, 1, 28, 28) in [0, 1] or None."""

    labels: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None


class Attack(Protocol):
    name: str

    def attack(self, batch: ReceivedBatch) -> AttackOutput: ...


_REGISTRY: dict[str, Callable[..., Attack]] = {}


def register(name: str) -> Callable[[Callable[..., Attack]], Callable[..., Attack]]:
    """Class decorator: make an attack available under ``name``."""
    def deco(factory: Callable[..., Attack]) -> Callable[..., Attack]:
        if name in _REGISTRY:
            raise ValueError(f"attack {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory
    return deco


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_attacks() -> list[str]:
    """Names of the built-in and entry-point attacks."""
    return sorted(set(_REGISTRY) | set(_plugins()))


def make_attack(name: str, bundle: ModelBundle, **options: Any) -> Attack:
    """Build the attack called ``name``; ``ConfigError`` listing the known names when there is none."""
    factory = _REGISTRY.get(name)
    if factory is None:
        plugin = _plugins().get(name)
        if plugin is None:
            raise ConfigError(f"unknown attack {name!r}; known attacks: {', '.join(known_attacks())}")
        factory = plugin.load()
    return factory(bundle, **options)


@register("feature-classifier")
class FeatureClassifier:
    """The core's simple attacker: a noise-aware classifier trained on intercepted symbols of the attacker's
    own auxiliary data (``bundle.eavesdropper``). It reads the public header and its own link's sigma^2
    (abar_eff via ``listener_view``) and guesses the label; it makes no reconstruction."""

    name = "feature-classifier"

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle

    @torch.no_grad()
    def attack(self, batch: ReceivedBatch) -> AttackOutput:
        dev = self.bundle.device
        logits = self.bundle.eavesdropper(batch.z.to(dev), batch.abar_eff.to(dev))
        return AttackOutput(labels=logits.argmax(1).cpu())
