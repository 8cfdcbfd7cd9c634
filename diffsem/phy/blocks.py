"""Sionna blocks that draw from a role's own generator (docs/design.md §3, frame path).

Sionna blocks draw their randomness from ``self.torch_rng``, which returns Sionna's global generator
(``sionna/phy/object.py``). The frame path needs every role to own its generator, so :func:`seeded` builds a block
whose ``torch_rng`` is the generator it is given. Importing this module imports Sionna (about 3.5 s on first import),
which is why :mod:`diffsem.phy` imports it lazily.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from sionna.phy import Block
from sionna.phy.object import Object


@cache
def _seeded_class(cls: type[Object]) -> type[Object]:
    if getattr(cls, "_diffsem_seeded", False):
        return cls
    return type(f"Seeded{cls.__name__}", (cls,), {"torch_rng": property(lambda self: self._diffsem_generator),
                                                   "_diffsem_seeded": True})


def seeded(cls: type[Block], generator: torch.Generator, **kwargs: Any) -> Block:
    """An instance of Sionna block ``cls`` (built with ``kwargs``, on the CPU) drawing from ``generator``, and so
    does every Sionna object inside it: CDL draws its rays' phases in a ``ChannelCoefficientsGenerator`` of its own,
    which would otherwise draw from Sionna's global generator (so a seeded CDL link did not reproduce)."""
    block = _seeded_class(cls)(device="cpu", **kwargs)
    for part in block.modules():
        if isinstance(part, Object):
            if part is not block:
                part.__class__ = _seeded_class(type(part))
            part._diffsem_generator = generator
    return block
