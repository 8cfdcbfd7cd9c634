"""The attack plugin API.

An attack is built from the model bundle (for the public parts: config, schedule, judge) and options::

    class MyAttack(Attack):
        name = "my-attack"
        def fit(self, images, labels, **kw) -> dict: ...          # attacker's own auxiliary data
        def attack(self, z, abar_eff, header) -> (labels | None, reconstructions | None)

``z`` (B, k) are the intercepted latents normalised by the listener (``diffsem.pipeline.listener_view``) so they are
a diffusion latent z_t at ``abar_eff`` (B,); ``header`` is the frames' :class:`~diffsem.pipeline.PublicHeader`.
labels: (B,) int64; reconstructions: (B, 1, 28, 28) in [0, 1].
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsem.checkpoints import load_weights, read_card, save_weights
from diffsem.errors import CheckpointError, ConfigError, DiffSemError

ENTRY_POINT_GROUP = "diffsem.attacks"
AttackResult = tuple[torch.Tensor | None, torch.Tensor | None]


class AttackError(DiffSemError):
    """An attack that failed while running (reported by its name)."""


class Attack:
    """Base class. Subclasses set ``name`` and implement :meth:`attack`; trainable ones override :meth:`fit` and
    :meth:`module` (the ``nn.Module`` whose weights :func:`save_attack` stores)."""

    name = "attack"
    trainable = False

    def __init__(self, bundle: Any, **options: Any):
        self.bundle = bundle
        self.options = options

    @property
    def device(self) -> torch.device:
        return getattr(self.bundle, "device", torch.device("cpu"))

    def fit(self, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> dict[str, float]:
        """Train on the attacker's auxiliary images (N, 1, 28, 28) and labels (N,); return metrics."""
        return {}

    def module(self) -> nn.Module | None:
        return None

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        raise NotImplementedError


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
    """Names of the built-in and entry-point (installed plugin) attacks."""
    return sorted(set(_REGISTRY) | set(_plugins()))


def attack_factory(name: str) -> Callable[..., Attack]:
    factory = _REGISTRY.get(name)
    if factory is None:
        plugin = _plugins().get(name)
        if plugin is None:
            raise ConfigError(f"unknown attack {name!r}; known attacks: {', '.join(known_attacks())}")
        try:
            factory = plugin.load()
        except Exception as exc:  # a broken plugin package must not take the caller down
            raise ConfigError(f"attack plugin {name!r} ({plugin.value}) failed to load: {exc}") from None
    return factory


def make_attack(name: str, bundle: Any, **options: Any) -> Attack:
    """Build the attack called ``name``; ``ConfigError`` listing the known names when there is none."""
    return attack_factory(name)(bundle, **options)


def attack_checkpoint_path(root: Path, name: str) -> Path:
    """``<checkpoint folder>/attacks/<name>.safetensors``."""
    return root / "attacks" / f"{name}.safetensors"


def save_attack(att: Attack, path: Path, card: dict[str, Any]) -> None:
    mod = att.module()
    if mod is None:
        raise ConfigError(f"attack {att.name!r} has nothing to save")
    cfg = att.bundle.cfg
    save_weights(mod, path, {"attack": att.name, "model_id": att.bundle.model_id,
                             "config": cfg.model_dump(mode="json"), "options": att.options, **card})


def load_attack(att: Attack, path: Path) -> dict[str, Any]:
    """Load ``att``'s weights; a checkpoint for another attack, data set or k is refused naming both sides."""
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint for attack {att.name!r}; train one with "
                              f"`diffsem attack train --attack {att.name} --dataset {att.bundle.cfg.dataset}`")
    card = read_card(path)
    if card.get("attack") != att.name:
        raise CheckpointError(f"{path}: checkpoint is for attack {card.get('attack')!r} but {att.name!r} was requested")
    stored = card.get("config", {})
    want = att.bundle.cfg.model_dump(mode="json")
    for key in ("dataset", "k"):
        if stored.get(key) != want[key]:
            raise CheckpointError(f"{path}: attack checkpoint has {key}={stored.get(key)!r} but the system it attacks "
                                  f"has {key}={want[key]!r}")
    mod = att.module()
    assert mod is not None
    card = load_weights(mod, path)
    mod.to(att.device).eval()
    return card


@torch.no_grad()
def judge_labels(bundle: Any, reconstructions: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """The independent judge's labels (N,) int64 for reconstructions (N, 1, 28, 28) in [0, 1]."""
    bundle.judge.eval()
    dev = bundle.device
    return torch.cat([bundle.judge(reconstructions[i:i + batch].to(dev)).argmax(1).cpu()
                      for i in range(0, len(reconstructions), batch)])


def card_json(card: dict[str, Any]) -> str:
    return json.dumps(card, indent=2, sort_keys=True)
