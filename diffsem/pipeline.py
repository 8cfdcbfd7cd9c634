"""The two ends of a frame's path, shared by the offline evaluator and the live services (the path itself, with its
random-draw order, is :func:`diffsem.framepath.send`).

transmitter: s (encoder output) -> x (self-noise for t* and the fed-back sigma_c^2) + the public header
listener:    y + public header (a, sigma_self^2) + own sigma^2 -> z_t at abar_eff

On an ofdm link the legitimate CSI is per resource element (:class:`diffsem.phy.grid.CsiFeedback`), so sigma_self^2
and the listener's sigma^2 are per real dim (B, k); the listener normalises per dim and reports one level per frame
by its deep-fade policy (:data:`DEEP_FADE_POLICIES`, docs/design.md §3, per-RE self-noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from diffsem.config import PrivacyConfig, build
from diffsem.errors import ConfigError
from diffsem.keyed import NonceSource, check_value, keyed_eps_batch, verify_key
from diffsem.phy.grid import CsiFeedback
from diffsem.selfnoise import abar_eff, apply_self_noise, normalise_received, per_row, sigma_self2

DEEP_FADE_POLICIES: tuple[str, ...] = ("mean", "erase", "min")
ERASE_RATIO = 0.5  # 'erase': a dim whose level is below half the frame's best (3 dB worse) is dropped


@dataclass(frozen=True)
class PublicHeader:
    """What every listener sees with a frame. a: abar_{t*} (1.0 = no self-noise). sigma_self2: (B,) on a flat
    link, (B, k) per real dim on an ofdm link, where it is computed from ``csi`` (the quantised feedback the
    transmitter used; what travels on the wire instead of sigma_self2, since both ends derive the same values)."""

    t_star: int | None
    a: float
    sigma_self2: torch.Tensor
    csi: CsiFeedback | None = None

    def rows(self, idx: slice | torch.Tensor | list[int]) -> PublicHeader:
        """The header of some of the batch's frames: every per-frame field (sigma_self2, the CSI codes) indexed."""
        csi = None if self.csi is None else CsiFeedback(self.csi.codes[idx], self.csi.units)
        return PublicHeader(self.t_star, self.a, self.sigma_self2[idx], csi)


def header_from_csi(t_star: int | None, a: float, csi: CsiFeedback) -> PublicHeader:
    """A listener rebuilds an ofdm frame's header from its public t*, a and quantised feedback: sigma_self^2 (B, k)."""
    s2 = sigma_self2(a, csi.sigma_c2()).to(torch.float32)
    return PublicHeader(t_star, a, s2 if t_star is not None else torch.zeros_like(s2), csi)


def privacy_level(t_star: int | None, abar: torch.Tensor) -> float:
    """a = abar_{t*}; ``None`` means no self-noise at all (a = 1, the plain system)."""
    if t_star is None:
        return 1.0
    build(PrivacyConfig, t_star=t_star, num_train_timesteps=len(abar))  # raises ConfigError when out of range
    return float(abar[t_star])


Feedback = torch.Tensor | float | CsiFeedback


def _header(t_star: int | None, abar: torch.Tensor, feedback: Feedback, b: int) -> PublicHeader:
    """The header for the fed-back CSI: a = abar_{t*} and sigma_self^2, (b,) for a scalar or per-frame sigma_c^2,
    (b, k) for per-RE feedback (zero without self-noise)."""
    a = privacy_level(t_star, abar)
    if isinstance(feedback, CsiFeedback):
        return header_from_csi(t_star, a, feedback)
    s2 = sigma_self2(a, torch.as_tensor(feedback, dtype=torch.float32)).expand(b).clone()
    if t_star is None:
        s2.zero_()
    return PublicHeader(t_star, a, s2)


def self_noise_frame(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, sigma_c2_feedback: Feedback,
                     generator: torch.Generator) -> tuple[torch.Tensor, PublicHeader]:
    """Transmitter side: s (B, k) unit power -> x (B, k), power <= 1, and the frame's public header.

    ``sigma_c2_feedback`` is the legitimate link's noise per real dim from CSI feedback: a scalar or (B,) (flat),
    or a :class:`CsiFeedback` (ofdm, per RE or subband). eps_self is drawn on the CPU from ``generator`` so a seed
    reproduces it on any host.
    """
    header = _header(t_star, abar, sigma_c2_feedback, s.shape[0])
    eps = torch.randn(s.shape, generator=generator).to(s.device)
    return apply_self_noise(s, header.a, header.sigma_self2.to(s.device), eps), header


def _per_dim_view(y: torch.Tensor, a: float, s2_self: torch.Tensor, s2_channel: torch.Tensor,
                  policy: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dim normalisation (docs/design.md §3, per-RE self-noise): z_i = y_i / sqrt(a + s2_self_i + s2_i) has level
    a_i = a / (a + s2_self_i + s2_i); the frame's one level is their mean (``mean``), their minimum (``min``), or
    the mean over the dims kept after zeroing those below ERASE_RATIO x the frame's best (``erase``)."""
    b, k = y.shape
    total = (a + s2_self.expand(b, k) + s2_channel.expand(b, k)).to(y.dtype)
    z = y / total.sqrt()  # z[i] = y[i] / sqrt(a + sigma_self^2[i] + sigma^2[i]): docs/design.md §3, per-RE self-noise
    level = (a / total.double()).to(torch.float32)  # level[i] = a / (a + sigma_self^2[i] + sigma^2[i]), same §
    if policy == "mean":
        return z, level.mean(dim=1)
    if policy == "min":
        return z, level.min(dim=1).values
    keep = level >= ERASE_RATIO * level.max(dim=1, keepdim=True).values
    return torch.where(keep, z, torch.zeros_like(z)), (level * keep).sum(dim=1) / keep.sum(dim=1)


def listener_view(y: torch.Tensor, header: PublicHeader, sigma2: torch.Tensor | float,
                  policy: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Any listener: received y (B, k) and its own channel noise sigma^2 ((B,) or per dim (B, k)) -> (z_t, abar_eff
    (B,)). Levels per dim (an ofdm link) are resolved to one per frame by ``policy`` (:data:`DEEP_FADE_POLICIES`)."""
    if policy not in DEEP_FADE_POLICIES:
        raise ConfigError(f"unknown deep-fade policy {policy!r}; use one of {', '.join(DEEP_FADE_POLICIES)}")
    s2_channel = torch.as_tensor(sigma2, dtype=torch.float32)
    if header.sigma_self2.dim() == 2 or s2_channel.dim() == 2:
        col = [v if v.dim() == 2 else v.reshape(-1, 1) for v in (header.sigma_self2.to(torch.float32), s2_channel)]
        return _per_dim_view(y, header.a, col[0].to(y.device), col[1].to(y.device), policy)
    s2_channel = s2_channel.expand(y.shape[0])
    z = normalise_received(y, header.a, header.sigma_self2, s2_channel)
    return z, abar_eff(header.a, header.sigma_self2, s2_channel).to(torch.float32)


@dataclass(frozen=True)
class KeyedInfo:
    """Public per-frame data of keyed self-noise: the nonces (B,) and the key's check value."""

    nonces: list[bytes]
    check: str


def keyed_self_noise_frame(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, sigma_c2_feedback: Feedback,
                           key: bytes, nonces: NonceSource) -> tuple[torch.Tensor, PublicHeader, KeyedInfo]:
    """Like :func:`self_noise_frame`, but eps_self comes from :mod:`diffsem.keyed` (HMAC(key, nonce) -> Philox, CPU)
    with a fresh nonce per frame from ``nonces``."""
    header = _header(t_star, abar, sigma_c2_feedback, s.shape[0])
    ns = nonces.take(s.shape[0])
    eps = keyed_eps_batch(key, ns, s.shape[1]).to(s.device)
    return apply_self_noise(s, header.a, header.sigma_self2.to(s.device), eps), header, KeyedInfo(ns, check_value(key))


def keyed_listener_view(y: torch.Tensor, header: PublicHeader, sigma2: torch.Tensor | float, info: KeyedInfo,
                        key: bytes | None, policy: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """The key holder: subtract the regenerated sigma_self * eps_self, then z_t at abar_eff = a / (a + sigma^2).

    A missing or wrong key raises :class:`diffsem.keyed.KeyedNoiseError` (checked against ``info.check``)."""
    verify_key(key, info.check)
    assert key is not None
    eps = keyed_eps_batch(key, info.nonces, y.shape[1]).to(y.device)
    std = per_row(torch.as_tensor(header.sigma_self2, dtype=y.dtype).to(y.device).sqrt())
    no_self_noise = PublicHeader(header.t_star, header.a, torch.zeros(y.shape[0]))
    return listener_view(y - std * eps, no_self_noise, sigma2, policy)
