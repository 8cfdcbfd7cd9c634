"""The channel's conventions, in one leaf module (it imports nothing of the project's): the symbol mapping, the noise
power of an SNR, the noise after equalisation and what a link delivers. The links that use them are
:class:`diffsem.phy.link.Link` (docs/design.md §3, channel).

Convention (Sionna's): a frame of ``k`` real latent values travels as ``k/2`` complex symbols of unit average
power, ``c = (x[0::2] + j x[1::2]) / sqrt(2)``. A link with SNR ``snr_db`` adds CN(0, N0) noise per complex
symbol with ``N0 = 10^(-snr_db/10)``. Block fading ``h`` (one gain per frame) multiplies the symbols; a
receiver that knows ``h`` equalises by zero forcing (divides by ``h``). After unpacking back to real values the
noise per **real latent dimension** has variance

    sigma_c^2 = N0 / |h|^2

Erased symbols are delivered as zeros and flagged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch


def noise_variance(snr_db: float | torch.Tensor) -> torch.Tensor:
    """N0 per complex symbol for unit-power symbols, ``10^(-snr_db/10)`` (docs/design.md §3, channel).

    Input: snr_db, float or tensor, dB (Es/N0). Output: float64 tensor, the shape of ``snr_db``."""
    return torch.pow(10.0, -torch.as_tensor(snr_db, dtype=torch.float64) / 10.0)


def to_symbols(x: torch.Tensor) -> torch.Tensor:
    """Pack real latents into complex symbols: (B, k) -> (B, k/2), unit power per real dim -> unit power per symbol,
    ``c = (x[0::2] + j x[1::2]) / sqrt(2)``. Raises ValueError for an odd k."""
    if x.shape[-1] % 2:
        raise ValueError(f"need an even number of real values per frame, got {x.shape[-1]}")
    return torch.complex(x[..., 0::2], x[..., 1::2]) / math.sqrt(2.0)


def from_symbols(c: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_symbols`: complex (B, k/2) -> real (B, k)."""
    return torch.stack((c.real, c.imag), dim=-1).flatten(-2) * math.sqrt(2.0)


def equalised_noise(n0: float, gain: torch.Tensor) -> torch.Tensor:
    """Noise per real latent dim after zero forcing, ``sigma_c^2 = N0 / |h|^2`` (docs/design.md §3, channel).

    Input: n0, float, the AWGN power per complex symbol; gain, (B,) complex, the fading gains h.
    Output: (B,) float32 (computed in float64)."""
    return (torch.tensor(n0, dtype=torch.float64) / gain.abs().to(torch.float64).pow(2)).to(torch.float32)


@dataclass
class ChannelOutput:
    """What a link delivers to its listener for a batch of B frames of k real values.

    latent: (B, k) float32, the equalised received latent y in real units.
    sigma_c2: float32 noise variance per real dimension after equalisation: (B,) on a flat link (N0 / |h|^2), (B, k)
        on an ofdm link (the LMMSE equaliser's per-RE noise variance; both reals of a symbol share it).
    gain: (B,) complex64, the fading gains h (ofdm: the mean channel over the frame's carried REs).
    erased: (B, k) bool, real dimensions lost to erasure (delivered as 0).
    csi: ofdm only, (B, k/2) float32: the receiver's expected noise N0 (1 + e) / |H|^2 at each carried RE from the
        true channel (e: its estimator's error per unit N0), what feedback reports (docs/design.md §3); None if flat.
    subcarrier_snr_db: ofdm only, (B, F) float32: each frame's SNR per subcarrier, dB (the dashboard's heat strip).
    lost: (B,) bool, whole frames the link lost (live delivery; None from a tap).
    delay_s: (B,) float64, each frame's delivery delay in seconds (live delivery; None from a tap).
    """

    latent: torch.Tensor
    sigma_c2: torch.Tensor
    gain: torch.Tensor
    erased: torch.Tensor
    csi: torch.Tensor | None = None
    subcarrier_snr_db: torch.Tensor | None = None
    lost: torch.Tensor | None = None
    delay_s: torch.Tensor | None = None

    @staticmethod
    def cat(outs: list[ChannelOutput]) -> ChannelOutput:
        """Consecutive outputs of one link joined along the batch (their fields set alike)."""
        if len(outs) == 1:
            return outs[0]
        return ChannelOutput(**{f.name: torch.cat([getattr(o, f.name) for o in outs])
                                for f in fields(ChannelOutput) if getattr(outs[0], f.name) is not None})


def tap(x: torch.Tensor) -> ChannelOutput:
    """A noiseless tap on the transmitted signal (an eavesdropper at infinite SNR): x (B, k) as sent, sigma_c^2 = 0,
    h = 1, nothing erased."""
    b = x.shape[0]
    return ChannelOutput(latent=x.detach().clone(), sigma_c2=torch.zeros(b), gain=torch.ones(b, dtype=torch.complex64),
                         erased=torch.zeros(x.shape, dtype=torch.bool))
