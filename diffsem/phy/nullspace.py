"""Null-space self-noise: the multi-antenna transmitter's beam, its power split and the listeners' combiners
(docs/design.md §3, multi-antenna links and null-space self-noise). Pure torch: no Sionna here.

Per channel use (one complex symbol c' of the self-noised frame u' = sqrt(a) s + sigma_self eps_self, E|c'|^2 =
a + sigma_self^2), a transmitter with n_tx antennas sends

    x = sqrt(beta) w c' + sqrt(p_null / d) P_perp n,      n ~ CN(0, I_{n_tx}),   p_null = 1 - beta (a + sigma_self^2)

- w: the beam, MRT on the fed-back channel H_hat (n_rx_legit, n_tx): its dominant right singular vector (h_hat^* /
  ||h_hat|| for one receive antenna; ZF has the same direction for a single single-antenna user), phase fixed so its
  first entry is real and >= 0 (n_tx = 1: w = 1). Gain g2 = sigma_1(H_hat)^2 (= ||h_hat||^2).
- P_perp = I - V_r V_r^H: the projector onto the null space of H_hat (V_r its r = n_rx_legit right singular vectors),
  of dimension d = n_tx - r. H_hat P_perp = 0, so with exact CSI the legitimate receiver never sees n.
- The beam's self-noise is DiffSem's rule (docs/design.md §3, self-noise) for the beam-normalised feedback
  sigma_c^2 = (N0 + (1 - beta a) e) / (beta g2): the legitimate receiver's noise relative to the beam, so its level
  stays at a. e is its estimator's error per channel entry (LS: N0; 0 with perfect CSI), which lets up to
  (1 - beta a) e of the null-space self-noise through (the same allowance as the ofdm feedback's N0 (1 + e)).
- Power: E||x||^2 = beta (a + sigma_self^2) + p_null = 1 per channel use when d > 0 (and ``null_space``); with
  n_tx = 1 (d = 0, beta = 1) it is today's a + sigma_self^2 <= 1 and x = u': exactly today's random self-noise.

A listener with channel H (n_rx, n_tx) sees y = g c' + H sqrt(p_null / d) P_perp n + noise, with the beam's
effective channel g = sqrt(beta) H w and the interference-plus-noise covariance

    R = N0 I + (p_null / d) H P_perp H^H

Both are what a listener can learn from the air (g from the frame's precoded pilots, R from the received samples),
never the legitimate CSI itself. Its LMMSE combiner, scaled to unit gain on the beam (the MVDR form, the same SINR),
f = R^-1 g / (g^H R^-1 g), gives c' + noise of variance sigma^2 = 1 / (g^H R^-1 g) per real latent dimension, so
the listener views it as any other link (:func:`diffsem.pipeline.listener_view`: level a / (a + sigma_self^2 +
sigma^2)). With exact CSI the legitimate receiver's sigma^2 is N0 / (beta g2), the feedback: level a. An
eavesdropper with n_rx >= d + 1 antennas can null the d-dimensional self-noise (Goel and Negi 2008; Liu, Hong and
Viterbo, arXiv 1402.2091; arXiv 2603.09129 on artificial-noise elimination by many-antenna eavesdroppers).

Channel-use axis. Channels, beams and powers carry an axis M: 1 on a flat link (one per frame), or k/2 (one per
symbol, per resource element on an ofdm grid); a frame's k/2 symbols broadcast against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffsem.channel import from_symbols, to_symbols
from diffsem.errors import ConfigError


class NullSpaceConfig(BaseModel):
    """The transmitter's power split: ``beam_fraction`` beta of the power carries the self-noised frame along the
    beam; with ``null_space`` the rest is self-noise in the null space of the fed-back channel."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    beam_fraction: float = Field(1.0, description="fraction of the transmit power on the beam, in (0, 1]")
    null_space: bool = Field(False, description="put the power the beam does not use into the null space")

    @field_validator("beam_fraction")
    @classmethod
    def _fraction(cls, v: float) -> float:
        if not (math.isfinite(v) and 0.0 < v <= 1.0):
            raise ValueError(f"beam_fraction={v} must be in (0, 1]")
        return v

    def check(self, n_tx: int, n_rx_legit: int = 1) -> None:
        """Raise ``ConfigError`` unless this split works with ``n_tx`` transmit antennas and a legitimate receiver
        with ``n_rx_legit``: null-space self-noise needs a null space (n_tx > n_rx_legit), a beam fraction
        below 1 needs somewhere to put the rest."""
        if self.null_space and n_tx <= n_rx_legit:
            raise ConfigError(f"null-space self-noise needs more transmit antennas than the legitimate receiver has "
                              f"(n_tx={n_tx}, n_rx={n_rx_legit}: no null space); use n_tx in 2, 4, 8 or null_space=false")
        if self.beam_fraction < 1.0 and not self.null_space:
            raise ConfigError(f"beam_fraction={self.beam_fraction} < 1 puts the rest of the power in the null space: "
                              "set null_space=true, or beam_fraction=1")


@dataclass(frozen=True)
class Beam:
    """A batch's precoder. w (B, M, n_tx) complex64 unit-norm beam; null (B, M, n_tx, n_tx) complex64 projector onto
    the null space, of rank d; gain2 (B, M) float64 the beam's gain sigma_1(H_hat)^2; beta the beam's power fraction."""

    w: torch.Tensor
    null: torch.Tensor
    d: int
    gain2: torch.Tensor
    beta: float

    def feedback(self, n0: float, leak: float | torch.Tensor = 0.0) -> torch.Tensor:
        """(B, M) float32: the legitimate receiver's expected noise relative to the beam, (N0 + leak) / (beta g2):
        the sigma_c^2 that DiffSem's rule compensates (docs/design.md §3, multi-antenna). ``leak``: the null-space
        self-noise its CSI error lets through (:func:`csi_leak`)."""
        return ((n0 + leak) / (self.beta * self.gain2)).to(torch.float32)


def csi_leak(csi_error: float | torch.Tensor, beta: float, a: float) -> float | torch.Tensor:
    """The null-space self-noise power that reaches a legitimate receiver whose fed-back channel has an error of
    variance ``csi_error`` per entry, at most (1 - beta a) csi_error: its error e lies in the null space of H_hat
    with d of its n_tx dimensions, where the self-noise has p_null / d <= (1 - beta a) / d per dimension."""
    return (1.0 - beta * a) * csi_error


def check_csi(csi: object, n_tx: int, batch: int, k: int, error: float | torch.Tensor = 0.0) -> torch.Tensor:
    """The fed-back CSI, checked: a finite complex tensor (B, M, n_rx, n_tx) with M = 1 (per frame) or k/2 (per
    symbol), and its estimation error variance per entry ``error``, a finite float >= 0 or, per symbol, one for each
    of the M > 1 channel uses. Raises ``ConfigError`` saying what was wrong and what is accepted."""
    want = f"(B={batch}, M=1 or {k // 2}, n_rx>=1, n_tx={n_tx})"
    if not isinstance(csi, torch.Tensor) or not csi.is_complex():
        raise ConfigError(f"CSI feedback must be a complex tensor of shape {want}, got {type(csi).__name__}")
    if csi.dim() != 4 or csi.shape[0] != batch or csi.shape[1] not in (1, k // 2) or csi.shape[2] < 1 \
            or csi.shape[3] != n_tx:
        raise ConfigError(f"CSI feedback has shape {tuple(csi.shape)}; expected {want}")
    if not bool(torch.isfinite(torch.view_as_real(csi)).all()):
        raise ConfigError("CSI feedback has non-finite values (NaN or inf); every entry must be finite")
    m = csi.shape[1]
    values = error if isinstance(error, torch.Tensor) else torch.tensor([error], dtype=torch.float64)
    if isinstance(error, torch.Tensor) and (m == 1 or error.shape != (m,)):
        raise ConfigError(f"CSI error variance of shape {tuple(error.shape)} for CSI of {m} channel uses; expected a "
                          f"float, or one per channel use ({m},) when M > 1")
    if not bool((torch.isfinite(values) & (values >= 0)).all()):
        raise ConfigError("CSI error variance must be finite and >= 0 (per channel entry)")
    return csi


def beamform(csi: torch.Tensor, beta: float) -> Beam:
    """MRT beam and null-space projector from fed-back CSI (B, M, n_rx, n_tx) (docs/design.md §3, multi-antenna).

    One receive antenna: w = h^* / ||h||, P_perp = I - w w^H. More: w = v_1 and P_perp = I - V V^H from the SVD
    H = U S V^H (v_1: the dominant right singular vector). The common phase is fixed so that w[0] >= 0."""
    h = csi.to(torch.complex128)
    n_rx, n_tx = h.shape[-2:]
    if n_rx == 1:
        row = h[..., 0, :]
        gain2 = row.abs().pow(2).sum(-1)
        v = row.conj() / gain2.sqrt()[..., None]
        span = v[..., :, None]  # (B, M, n_tx, 1)
    else:
        _, s, vh = torch.linalg.svd(h, full_matrices=True)
        gain2 = s[..., 0].pow(2)
        span = vh[..., :n_rx, :].conj().transpose(-1, -2)  # (B, M, n_tx, n_rx): the row space of H
        v = span[..., 0]
    first = v[..., :1]
    phase = torch.where(first.abs() > 0, first.conj() / first.abs().clamp_min(1e-300), torch.ones_like(first))
    w = v * phase
    eye = torch.eye(n_tx, dtype=h.dtype)
    null = eye - span @ span.conj().transpose(-1, -2)
    return Beam(w.to(torch.complex64), null.to(torch.complex64), max(n_tx - min(n_rx, n_tx), 0), gain2, beta)


def null_power(beta: float, a: float, s2_self: torch.Tensor, k: int) -> torch.Tensor:
    """p_null = 1 - beta (a + sigma_self^2) per channel use: (B, 1) for a per-frame sigma_self^2 (B,), (B, k/2) for
    one per real dim (B, k) (both reals of a symbol share it). Total power is then 1 (docs/design.md §3)."""
    s2 = s2_self.to(torch.float64)
    s2 = s2[:, None] if s2.dim() == 1 else s2[:, 0:k:2]
    return (1.0 - beta * (a + s2)).clamp_min(0.0)


def precode(u: torch.Tensor, beam: Beam, p_null: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """The antenna signals of self-noised frames u (B, k) real: x (B, k/2, n_tx) complex64,
    x = sqrt(beta) w c' + sqrt(p_null / d) P_perp n. ``p_null`` (B, 1 or k/2) or None (no null-space self-noise);
    n ~ CN(0, I) is drawn from ``generator`` (the transmitter's) only when there is a null space to fill."""
    c = to_symbols(u.detach().to("cpu", torch.float32))
    b, j = c.shape
    x = math.sqrt(beam.beta) * beam.w * c[..., None]  # (B, k/2, n_tx): w (B, 1 or k/2, n_tx) broadcasts
    if p_null is None or beam.d == 0:
        return x
    n = torch.randn((b, j, beam.w.shape[-1]), generator=generator, dtype=torch.complex64)
    # P_perp n per channel use: one (k/2 x n_tx) @ (n_tx x n_tx) product per frame when the projector is per frame
    projected = n @ beam.null[:, 0].mT if beam.null.shape[1] == 1 else (beam.null @ n[..., None])[..., 0]
    return x + (p_null / beam.d).sqrt().to(torch.float32)[..., None] * projected


def listener_channel(h: torch.Tensor, beam: Beam, p_null: torch.Tensor | None, n0: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """What a listener with channel h (B, M, n_rx, n_tx) sees of the beam: g = sqrt(beta) H w (B, M', n_rx) and
    R = N0 I + (p_null / d) H P_perp H^H (B, M', n_rx, n_rx), complex128 (M' broadcasts h, the beam and p_null)."""
    h64, w, null = h.to(torch.complex128), beam.w.to(torch.complex128), beam.null.to(torch.complex128)
    g = math.sqrt(beam.beta) * (h64 @ w[..., None])[..., 0]
    n_rx = h.shape[-2]
    r = n0 * torch.eye(n_rx, dtype=torch.complex128).expand(*g.shape[:2], n_rx, n_rx)
    if p_null is not None and beam.d > 0:
        an = h64 @ null @ h64.conj().transpose(-1, -2)  # (B, M', n_rx, n_rx)
        r = r + (p_null.to(torch.float64) / beam.d)[..., None, None] * an
    return g, r


def combine(y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LMMSE combining of received y (B, k/2, n_rx) with the beam's channel g (B, M, n_rx) and the interference-
    plus-noise covariance r (B, M, n_rx, n_rx), scaled to unit gain on the beam: (latent (B, k) float32, its noise
    per real dim sigma^2 = 1 / (g^H R^-1 g): (B,) for M = 1, (B, k) for M = k/2)."""
    b, j, n_rx = y.shape
    rg = torch.linalg.solve(r, g[..., None])[..., 0]  # R^-1 g
    q = (g.conj() * rg).sum(-1).real  # g^H R^-1 g, the SINR per unit beam power
    f = rg / q[..., None]
    c = (f.conj().expand(b, j, n_rx) * y.to(torch.complex128)).sum(-1)
    sigma2 = (1.0 / q).to(torch.float32)
    sigma2 = sigma2[:, 0] if sigma2.shape[1] == 1 else sigma2.repeat_interleave(2, dim=1)
    return from_symbols(c.to(torch.complex64)), sigma2
