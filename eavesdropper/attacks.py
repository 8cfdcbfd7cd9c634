"""The eavesdropper service's adapter to the core's attacks: a batch of received frames in, an attack's output out.

Attacks, their discovery by name and their loading are the core's (:mod:`diffsem.attacks`: ``load_attack``, the
entry-point group ``diffsem.attacks``); this module only feeds a :class:`~services_common.frames.ReceivedBatch` (z_t
and abar_eff from the core's ``listener_view``, and the public headers) to ``attack(z, abar_eff, header)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsem.attacks import Attack as CoreAttack
from diffsem.attacks import AttackError, known_attacks, load_attack
from diffsem.bundle import ModelBundle
from diffsem.pipeline import PublicHeader
from services_common.frames import ReceivedBatch

__all__ = ["AttackOutput", "ServiceAttack", "known_attacks", "make_attack"]


@dataclass
class AttackOutput:
    """labels: (B,) int64 guesses or None; reconstructions: (B, 1, 28, 28) in [0, 1] or None."""

    labels: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None


def header_of(batch: ReceivedBatch) -> PublicHeader:
    """The core's PublicHeader for a batch (t* and a of its first frame; sigma_self^2 and seq per frame)."""
    h0 = batch.headers[0]
    s2 = torch.tensor([h.sigma_self2 for h in batch.headers], dtype=torch.float32)
    return PublicHeader(h0.t_star if h0.HasField("t_star") else None, float(h0.a), s2, seq=batch.seq)


class ServiceAttack:
    """Runs a core attack on a service batch. An exception inside the plugin becomes an ``AttackError`` that names
    the attack, so the service reports it and counts the frames as failed."""

    def __init__(self, core: CoreAttack):
        self.core = core
        self.name = core.name

    def attack(self, batch: ReceivedBatch) -> AttackOutput:
        try:
            labels, recon = self.core.attack(batch.z, batch.abar_eff, header_of(batch))
        except Exception as exc:  # a plugin's bug must not take the service down
            raise AttackError(f"attack {self.name!r} failed: {type(exc).__name__}: {exc}") from None
        return AttackOutput(labels=labels, reconstructions=recon)


def make_attack(name: str, bundle: ModelBundle, **options: Any) -> ServiceAttack:
    """:func:`diffsem.attacks.load_attack` (same options: ``checkpoint_root``, ``checkpoint``,
    ``transmitter_checkpoint``, the attack's own), wrapped for service batches."""
    return ServiceAttack(load_attack(name, bundle, **options))


