"""Keyed self-noise (``self_noise = keyed``), beyond the paper.

The transmitter draws eps_self from a counter-based generator keyed by a secret shared with the legitimate
receiver: seed = HMAC-SHA256(key, nonce) keys NumPy's Philox, always on the CPU, so the draw is bit-identical on
CPU and GPU hosts. The receiver regenerates eps_self and subtracts sigma_self * eps_self, so it sees
y' = sqrt(a) s + channel noise and its effective level is abar_eff = a / (a + sigma_c^2); an eavesdropper without
the key still sees a / (a + sigma_self^2 + sigma_e^2).

nonce = a random 8-byte per-session prefix + the 8-byte frame sequence number, so a (key, nonce) pair is never
reused, even across transmitter restarts (two frames with the same key noise could be subtracted to cancel it).
A keyed check value HMAC-SHA256(key, "diffsem-key-check")[:8] travels in the header: a receiver with a missing or
wrong key gets :class:`KeyError_` instead of silent garbage. The key is read from a file or an environment
variable and never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np
import torch

from diffsem.defaults import KEY_ENV
from diffsem.errors import KeyedNoiseError  # defined with the other errors so torch-free callers can catch it

CHECK_LABEL = b"diffsem-key-check"
MIN_KEY_BYTES = 16


def load_key(path: str | Path | None = None, env: str = KEY_ENV) -> bytes:
    """The shared secret: from ``path`` (raw bytes, or hex text) or else the environment variable ``env`` (hex)."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise KeyedNoiseError(f"self-noise key file {p} not found")
        raw = p.read_bytes().strip()
        try:
            key = bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            key = raw
    else:
        text = os.environ.get(env)
        if not text:
            raise KeyedNoiseError(f"keyed self-noise needs a key: set {env} (hex) or give a key file")
        try:
            key = bytes.fromhex(text.strip())
        except ValueError:
            raise KeyedNoiseError(f"{env} must be hex (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")\
                from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyedNoiseError(f"self-noise key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def check_value(key: bytes) -> str:
    """Public keyed check value (16 hex chars) that lets a receiver verify it holds the sender's key."""
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


def verify_key(key: bytes | None, check: str) -> None:
    if key is None:
        raise KeyedNoiseError("frame uses keyed self-noise but this receiver has no key "
                              f"(set {KEY_ENV} or give a key file)")
    if not hmac.compare_digest(check_value(key), check):
        raise KeyedNoiseError("frame uses keyed self-noise with a different key than this receiver's "
                              "(key check value mismatch)")


class NonceSource:
    """Unique nonces: a random per-session prefix (8 bytes from the OS) + a 64-bit sequence number."""

    def __init__(self, prefix: bytes | None = None):
        self.prefix = prefix if prefix is not None else secrets.token_bytes(8)
        self.seq = 0

    def take(self, n: int) -> list[bytes]:
        out = [self.prefix + (self.seq + i).to_bytes(8, "big") for i in range(n)]
        self.seq += n
        return out


def keyed_eps(key: bytes, nonce: bytes, k: int) -> torch.Tensor:
    """eps_self (k,) float32, standard normal, from Philox keyed by HMAC-SHA256(key, nonce); CPU only."""
    digest = hmac.new(key, nonce, hashlib.sha256).digest()
    bitgen = np.random.Philox(key=int.from_bytes(digest[:16], "little"), counter=int.from_bytes(digest[16:], "little"))
    return torch.from_numpy(np.random.Generator(bitgen).standard_normal(k, dtype=np.float32))


def keyed_eps_batch(key: bytes, nonces: list[bytes], k: int) -> torch.Tensor:
    return torch.stack([keyed_eps(key, n, k) for n in nonces])
