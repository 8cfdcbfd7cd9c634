"""The eavesdropper service's adapter to the core's attacks: a batch of received frames in, an attack's output out.

Attacks, their discovery by name and their loading are the core's (:mod:`diffsem.attacks`: ``load_attack``, the
entry-point group ``diffsem.attacks``); this module only feeds a :class:`~services_common.frames.ReceivedBatch` (z_t
and abar_eff from the core's ``listener_view``) to ``attack(z, abar_eff, header)`` with the core's header of the
frames, the one the view was computed with (per-RE self-noise and CSI codes included), as ``diffsem attack eval``
gives it: it never rebuilds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffsem.attacks import Attack as CoreAttack
from diffsem.attacks import AttackError, known_attacks, load_attack
from diffsem.bundle import ModelBundle
from services_common.frames import ReceivedBatch

__all__ = ["AttackOutput", "ServiceAttack", "known_attacks", "make_attack"]


@dataclass
class AttackOutput:
    """labels: (B,) int64 guesses or None; reconstructions: (B, 1, 28, 28) in [0, 1] or None."""

    labels: torch.Tensor | None = None
    reconstructions: torch.Tensor | None = None


class ServiceAttack:
    """Runs a core attack on a service batch. An exception inside the plugin becomes an ``AttackError`` that names
    the attack, so the service reports it and counts the frames as failed."""

    def __init__(self, core: CoreAttack):
        self.core = core
        self.name = core.name

    def attack(self, batch: ReceivedBatch) -> AttackOutput:
        """The attack on each group of frames that share a header, its outputs put back in the batch's order."""
        parts = []
        try:
            for idx, header in batch.groups:
                parts.append((idx, *self.core.attack(batch.z[idx], batch.abar_eff[idx], header)))
        except Exception as exc:  # a plugin's bug must not take the service down
            raise AttackError(f"attack {self.name!r} failed: {type(exc).__name__}: {exc}") from None
        return AttackOutput(labels=_in_order(parts, 1, len(batch.z)), reconstructions=_in_order(parts, 2, len(batch.z)))


def _in_order(parts: list[tuple], at: int, b: int) -> torch.Tensor | None:
    """Output ``at`` of every group, scattered back to the batch's rows (None when the attack gives none)."""
    if parts[0][at] is None:
        return None
    first = parts[0][at]
    out = torch.empty((b, *first.shape[1:]), dtype=first.dtype, device=first.device)
    for part in parts:
        out[part[0]] = part[at]
    return out


def make_attack(name: str, bundle: ModelBundle, **options: Any) -> ServiceAttack:
    """:func:`diffsem.attacks.load_attack` (same options: ``checkpoint_root``, ``checkpoint``,
    ``transmitter_checkpoint``, the attack's own), wrapped for service batches."""
    return ServiceAttack(load_attack(name, bundle, **options))


