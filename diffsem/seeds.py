"""The one seed function: a stable 63-bit seed per (base seed, names and numbers), the same in every process and
on every host, so that each role and each link can own an independent generator (docs/design.md §3, frame path)."""

from __future__ import annotations

import zlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """seed * 1000003 + CRC-32 of ``repr(parts)``, modulo 2^63; e.g. ``derive_seed(0, "legit", 10.0, 300)``."""
    return (seed * 1_000_003 + zlib.crc32(repr(parts).encode())) % (2**63)


def generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` (CPU draws are bit-identical on CPU and GPU hosts)."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))
