"""Attacks an eavesdropper can run, found by name.

An attack is built from the model bundle and the attacker's options, and maps a batch of intercepted
frames to label guesses and/or image reconstructions::

    class MyAttack:
        name = "my-attack"
        def __init__(self, bundle: ModelBundle, **options): ...
        def attack(self, batch: ReceivedBatch) -> AttackOutput: ...

The attacks themselves live in the core (:mod:`diffsem.attacks`, whose API is ``attack(z, abar_eff, header)``);
this module adapts them to service batches. Register one with ``@register("my-attack")``, or from another
package through the entry-point
group ``diffsem.attacks`` (``my-attack = my_pkg.attacks:MyAttack``), so a user adds one without touching the
project. :func:`make_attack` with an unknown name raises ``ConfigError`` listing the known ones.

``ReceivedBatch`` (:mod:`services_common.frames`) holds the intercepted latents y (B, k), the attacker's own
link noise sigma2 (B,), the public headers, and z_t / abar_eff from the core's ``listener_view``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from diffsem.attacks import ENTRY_POINT_GROUP, AttackError, known_attacks, register
from diffsem.attacks import Attack as CoreAttack
from diffsem.attacks import make_attack as make_core_attack
from diffsem.bundle import ModelBundle
from diffsem.pipeline import PublicHeader
from services_common.frames import ReceivedBatch

__all__ = ["ENTRY_POINT_GROUP", "AttackOutput", "Attack", "ServiceAttack", "known_attacks", "make_attack", "register"]


@dataclass
class AttackOutput:
    """labels: (B,) int64 guesses or None; reconstructions: (B, 1, 28, 28) in [0, 1] or None."""

    labels: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None


class Attack(Protocol):
    name: str

    def attack(self, batch: ReceivedBatch) -> AttackOutput: ...


def header_of(batch: ReceivedBatch) -> PublicHeader:
    """The core's PublicHeader for a batch (t* and a of its first frame; sigma_self^2 per frame)."""
    h0 = batch.headers[0]
    s2 = torch.tensor([h.sigma_self2 for h in batch.headers], dtype=torch.float32)
    return PublicHeader(h0.t_star if h0.HasField("t_star") else None, float(h0.a), s2)


class ServiceAttack:
    """Runs a core :class:`diffsem.attacks.Attack` on a service batch. An exception inside the plugin becomes an
    ``AttackError`` that names the attack, so the service reports it and counts the frames as failed."""

    def __init__(self, core: CoreAttack):
        self.core = core
        self.name = core.name

    def attack(self, batch: ReceivedBatch) -> AttackOutput:
        try:
            labels, recon = self.core.attack(batch.z, batch.abar_eff, header_of(batch))
        except Exception as exc:  # a plugin's bug must not take the service down
            raise AttackError(f"attack {self.name!r} failed: {type(exc).__name__}: {exc}") from None
        return AttackOutput(labels=labels, reconstructions=recon)


def make_attack(name: str, bundle: ModelBundle, **options: Any) -> Attack:
    """Build the attack called ``name`` (built-in or plugin); ``ConfigError`` listing the known ones otherwise.

    Trainable attacks load their weights from ``checkpoint_root=`` (a checkpoint folder)
    or ``checkpoint=`` (default: ``<checkpoint_root>/attacks/<name>.safetensors``)."""
    from diffsem.attacks import attack_checkpoint_path, load_attack
    from diffsem.bundle import checkpoint_dir

    checkpoint = options.pop("checkpoint", None)
    root = options.pop("checkpoint_root", None) or checkpoint_dir(bundle.cfg.dataset)
    core = make_core_attack(name, bundle, **options)
    if core.trainable:
        load_attack(core, checkpoint or attack_checkpoint_path(root, name))
    return ServiceAttack(core)
