"""The physical channel, in one place for the offline evaluator and the live emulator.

Convention (Sionna's): a frame of ``k`` real latent values travels as ``k/2`` complex symbols of unit average
power, ``c = (x[0::2] + j x[1::2]) / sqrt(2)``. A link with SNR ``snr_db`` adds CN(0, N0) noise per complex
symbol with ``N0 = 10^(-snr_db/10)``. Block fading ``h`` (one gain per frame) multiplies the symbols; a
receiver that knows ``h`` equalises by zero forcing (divides by ``h``). After unpacking back to real values the
noise per **real latent dimension** has variance

    sigma_c^2 = N0 / |h|^2

Erased symbols (probability ``erasure_prob`` each) are delivered as zeros and flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from diffsem.config import LinkConfig


def noise_variance(snr_db: float | torch.Tensor) -> torch.Tensor:
    """N0 per complex symbol for unit-power symbols: ``10^(-snr_db/10)``. Shape follows ``snr_db``."""
    return torch.pow(10.0, -torch.as_tensor(snr_db, dtype=torch.float64) / 10.0)


def to_symbols(x: torch.Tensor) -> torch.Tensor:
    """Pack real latents (B, k) into complex symbols (B, k/2); unit power per real dim -> unit power per symbol."""
    if x.shape[-1] % 2:
        raise ValueError(f"need an even number of real values per frame, got {x.shape[-1]}")
    return torch.complex(x[..., 0::2], x[..., 1::2]) / math.sqrt(2.0)


def from_symbols(c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_symbols`: complex (B, k/2) -> real (B, k)."""
    return torch.stack((c.real, c.imag), dim=-1).flatten(-2) * math.sqrt(2.0)


def draw_fading(n: int, link: LinkConfig, generator: torch.Generator) -> torch.Tensor:
    """Draw ``n`` block-fading gains (complex64, shape (n,)) with E|h|^2 = 1, on Sionna
    (:func:`diffsem.phy.flat.draw_gains`).

    ``none``: h = 1. ``rayleigh``: h ~ CN(0, 1). ``rician``: a line-of-sight part of power K/(K+1) plus
    CN(0, 1/(K+1)) scatter, K = ``link.rician_k`` (linear).
    """
    from diffsem.phy.flat import draw_gains  # Sionna's import is slow: only when a channel is used

    return draw_gains(n, link, generator)


@dataclass
class ChannelOutput:
    """What a receiver with CSI gets back from a link.

    latent: (B, k) float32, the equalised received latent in real units.
    sigma_c2: noise variance per real dimension after equalisation, float32: (B,) on a flat link (N0 / |h|^2),
        (B, k) on an ofdm link (the LMMSE equaliser's per-RE noise variance; both reals of a symbol share it).
    gain: (B,) complex64, the fading gains h (ofdm: the mean channel over the frame's carried REs).
    erased: (B, k) bool, real dimensions lost to erasure (delivered as 0).
    csi: ofdm only, (B, k/2) float32: the receiver's expected noise N0 (1 + e) / |H|^2 at each carried RE from the
        true channel (e: its estimator's error per unit N0), what feedback reports (docs/design.md §3); None if flat.
    """

    latent: torch.Tensor
    sigma_c2: torch.Tensor
    gain: torch.Tensor
    erased: torch.Tensor
    csi: torch.Tensor | None = None

    @staticmethod
    def cat(outs: list[ChannelOutput]) -> ChannelOutput:
        """Consecutive outputs of one link joined along the batch (their fields set alike)."""
        if len(outs) == 1:
            return outs[0]
        return ChannelOutput(**{f.name: torch.cat([getattr(o, f.name) for o in outs])
                                for f in fields(ChannelOutput) if getattr(outs[0], f.name) is not None})


def apply_link(x: torch.Tensor, link: LinkConfig, generator: torch.Generator,
               gain: torch.Tensor | None = None) -> ChannelOutput:
    """Send real latents ``x`` (B, k), at most unit power per real dim, over one ``flat`` link (Sionna's AWGN and
    flat fading, :func:`diffsem.phy.flat.apply_flat`; ``ofdm`` links are stateful: :class:`diffsem.phy.OfdmLink`).

    All randomness comes from ``generator`` on the CPU, so a seed gives bit-identical noise on any host.
    ``gain`` (B,) overrides the fading draw (the emulator holds one gain per coherence block).
    """
    if link.phy != "flat":
        raise ValueError("apply_link carries flat links; an ofdm link is a diffsem.phy.OfdmLink")
    from diffsem.phy.flat import apply_flat

    return apply_flat(x, link, generator, gain)


def equalised_noise(snr_db: float, gain: torch.Tensor) -> torch.Tensor:
    """sigma_c^2 = N0 / |h|^2 per real latent dim after zero forcing; gain (B,) complex -> (B,) float32."""
    return (noise_variance(snr_db) / gain.abs().to(torch.float64).pow(2)).to(torch.float32)
