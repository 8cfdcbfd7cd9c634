"""The two ends of a frame's path, shared by the offline evaluator and the live services (the path itself, with its
random-draw order, is :func:`diffsem.framepath.send`).

transmitter: s (encoder output) -> x (self-noise for t* and the fed-back sigma_c^2) + the public header
listener:    y + public header (a, sigma_self^2) + own sigma^2 -> z_t at abar_eff
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsem.config import PrivacyConfig, build
from diffsem.keyed import NonceSource, check_value, keyed_eps_batch, verify_key
from diffsem.selfnoise import abar_eff, apply_self_noise, normalise_received, sigma_self2


@dataclass(frozen=True)
class PublicHeader:
    """What every listener sees with a frame. a: abar_{t*} (1.0 = no self-noise). sigma_self2: (B,)."""

    t_star: int | None
    a: float
    sigma_self2: torch.Tensor


def privacy_level(t_star: int | None, abar: torch.Tensor) -> float:
    """a = abar_{t*}; ``None`` means no self-noise at all (a = 1, the plain system)."""
    if t_star is None:
        return 1.0
    build(PrivacyConfig, t_star=t_star, num_train_timesteps=len(abar))  # raises ConfigError when out of range
    return float(abar[t_star])


def _self_noise_levels(t_star: int | None, abar: torch.Tensor, sigma_c2_feedback: torch.Tensor | float,
                       b: int) -> tuple[float, torch.Tensor]:
    """a = abar_{t*} and sigma_self^2 (b,) per real dim for the fed-back sigma_c^2 (zero without self-noise)."""
    a = privacy_level(t_star, abar)
    s2 = sigma_self2(a, torch.as_tensor(sigma_c2_feedback, dtype=torch.float32)).expand(b).clone()
    if t_star is None:
        s2.zero_()
    return a, s2


def self_noise_frame(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, sigma_c2_feedback: torch.Tensor | float,
                     generator: torch.Generator) -> tuple[torch.Tensor, PublicHeader]:
    """Transmitter side: s (B, k) unit power -> x (B, k), power <= 1, and the frame's public header.

    ``sigma_c2_feedback`` is the legitimate link's noise per real dim (scalar or (B,)) from CSI feedback.
    eps_self is drawn on the CPU from ``generator`` so a seed reproduces it on any host.
    """
    a, s2 = _self_noise_levels(t_star, abar, sigma_c2_feedback, s.shape[0])
    eps = torch.randn(s.shape, generator=generator).to(s.device)
    return apply_self_noise(s, a, s2.to(s.device), eps), PublicHeader(t_star, a, s2)


def listener_view(y: torch.Tensor, header: PublicHeader, sigma2: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Any listener: received y (B, k) and its own channel noise sigma^2 per real dim -> (z_t, abar_eff (B,))."""
    s2_channel = torch.as_tensor(sigma2, dtype=torch.float32).expand(y.shape[0])
    z = normalise_received(y, header.a, header.sigma_self2, s2_channel)
    return z, abar_eff(header.a, header.sigma_self2, s2_channel).to(torch.float32)


@dataclass(frozen=True)
class KeyedInfo:
    """Public per-frame data of keyed self-noise: the nonces (B,) and the key's check value."""

    nonces: list[bytes]
    check: str


def keyed_self_noise_frame(s: torch.Tensor, t_star: int | None, abar: torch.Tensor,
                           sigma_c2_feedback: torch.Tensor | float, key: bytes,
                           nonces: NonceSource) -> tuple[torch.Tensor, PublicHeader, KeyedInfo]:
    """Like :func:`self_noise_frame`, but eps_self comes from :mod:`diffsem.keyed` (HMAC(key, nonce) -> Philox, CPU)
    with a fresh nonce per frame from ``nonces``."""
    a, s2 = _self_noise_levels(t_star, abar, sigma_c2_feedback, s.shape[0])
    ns = nonces.take(s.shape[0])
    eps = keyed_eps_batch(key, ns, s.shape[1]).to(s.device)
    return apply_self_noise(s, a, s2.to(s.device), eps), PublicHeader(t_star, a, s2), KeyedInfo(ns, check_value(key))


def keyed_listener_view(y: torch.Tensor, header: PublicHeader, sigma2: torch.Tensor | float, info: KeyedInfo,
                        key: bytes | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The key holder: subtract the regenerated sigma_self * eps_self, then z_t at abar_eff = a / (a + sigma^2).

    A missing or wrong key raises :class:`diffsem.keyed.KeyedNoiseError` (checked against ``info.check``)."""
    verify_key(key, info.check)
    assert key is not None
    eps = keyed_eps_batch(key, info.nonces, y.shape[1]).to(y.device)
    std = torch.as_tensor(header.sigma_self2, dtype=y.dtype).to(y.device).sqrt().reshape(-1, 1)
    no_self_noise = PublicHeader(header.t_star, header.a, torch.zeros(y.shape[0]))
    return listener_view(y - std * eps, no_self_noise, sigma2)
