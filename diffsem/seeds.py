"""Seeds: the one derivation for reproducible runs, and the operating system's entropy for everything that protects.

- :func:`derive_seed` / :func:`generator`: a stable 63-bit seed per (base seed, names and numbers), the same in every
  process and on every host, so that each role and each link can own an independent generator (docs/design.md §3,
  frame path). The offline evaluator and a live run started with an explicit seed use it: reproducible, and so
  known to anyone who knows the base seed.
- :func:`os_seed`: 63 bits from the OS (:mod:`secrets`), what a live service draws at start-up when no seed is given,
  so that no listener can predict its self-noise or channel noise (docs/design.md §8). Such a seed is never logged
  or exposed.
"""

from __future__ import annotations

import secrets
import zlib

import torch


def derive_seed(seed: int, *parts: object) -> int:
    """seed * 1000003 + CRC-32 of ``repr(parts)``, modulo 2^63; e.g. ``derive_seed(0, "legit", 10.0, 300)``."""
    return (seed * 1_000_003 + zlib.crc32(repr(parts).encode())) % (2**63)


def generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed` (CPU draws are bit-identical on CPU and GPU hosts)."""
    return torch.Generator().manual_seed(derive_seed(seed, *parts))


def os_seed() -> int:
    """A fresh 63-bit seed from the operating system's entropy: unpredictable, and never the same twice."""
    return secrets.randbits(63)
