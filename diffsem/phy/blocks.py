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


@cache
def _seeded_class(cls: type[Block]) -> type[Block]:
    return type(f"Seeded{cls.__name__}", (cls,), {"torch_rng": property(lambda self: self._diffsem_generator)})


def seeded(cls: type[Block], generator: torch.Generator, **kwargs: Any) -> Block:
    """An instance of Sionna block ``cls`` (built with ``kwargs``, on the CPU) drawing from ``generator``."""
    block = _seeded_class(cls)(device="cpu", **kwargs)
    block._diffsem_generator = generator
    return block
