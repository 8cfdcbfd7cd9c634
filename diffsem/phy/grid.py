"""Where a frame's symbols sit on the OFDM resource grid, how CSI feedback is grouped and quantised, and the
cross-field check of a link against the frame size k (docs/design.md §3, OFDM). Pure arithmetic: no Sionna here,
so the emulator's validator can call :func:`check_link` without importing it.

Layout. A frame of k real values is k/2 complex symbols. They fill the grid's data resource elements (REs) in
Sionna's ``ResourceGridMapper`` order: OFDM symbol by OFDM symbol, subcarrier by subcarrier, skipping the pilot
OFDM symbols (a Kronecker pattern: pilots on every subcarrier of ``pilot_symbols``). Data REs beyond k/2 carry
zero-power padding.

Feedback units. ``re``: one unit per carried symbol (k/2 units); ``subband``: one unit per ``subband_size`` adjacent
subcarriers over the whole frame; ``frame``: one unit (today's scalar rule from mean CSI). Both real values of a
symbol share its unit.

Quantisation. A fed-back noise level sigma^2 travels as a uint8 code of its dB value, step :data:`CSI_STEP_DB`,
clipped to :data:`CSI_RANGE_DB`; both ends dequantise the same code, so they compute the same sigma_self^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from diffsem.config import LinkConfig
from diffsem.errors import ConfigError

CSI_STEP_DB = 0.5
CSI_RANGE_DB = (-40.0, 40.0)  # codes 0..160
WINDOW_FRAMES = 64  # frames of one continuous channel realisation (diffsem.phy.ofdm draws one window at a time)
# One window's channel H, (feedback_delay + WINDOW_FRAMES) x ofdm_symbols x fft_size complex64, at most this size:
# drawing it costs about its size again in memory and ~1 s per 100 MB on a 2-core CPU, under the emulator's lock.
MAX_WINDOW_MB = 64
# The settings that make an ofdm link's resource grid (where each carried RE sits, and its spacing): links that carry
# one per-RE precoded frame (a multi-antenna transmitter's) must share them.
GRID_FIELDS: tuple[str, ...] = ("fft_size", "ofdm_symbols", "pilot_symbols", "subcarrier_spacing_khz")


def window_bytes(link: LinkConfig) -> int:
    """Bytes of one channel window of an ``ofdm`` link (complex64 H over its lead-in and WINDOW_FRAMES frames)."""
    return (link.feedback_delay + WINDOW_FRAMES) * link.ofdm_symbols * link.fft_size * 8


@dataclass(frozen=True)
class GridLayout:
    """The resource grid of an ``ofdm`` link and where a frame of ``k`` real values sits on it."""

    ofdm_symbols: int
    fft_size: int
    pilot_symbols: tuple[int, ...]
    k: int

    @classmethod
    def of(cls, link: LinkConfig, k: int) -> GridLayout:
        return cls(link.ofdm_symbols, link.fft_size, tuple(sorted(link.pilot_symbols)), k)

    @property
    def data_res(self) -> int:
        """Data REs per frame: (OFDM symbols - pilot symbols) x subcarriers."""
        return (self.ofdm_symbols - len(self.pilot_symbols)) * self.fft_size

    @property
    def n_symbols(self) -> int:
        """Complex symbols a frame carries: k/2."""
        return self.k // 2

    @cached_property
    def positions(self) -> torch.Tensor:
        """(k/2, 2) int64: (OFDM symbol, subcarrier) of each carried symbol, in the mapper's order."""
        data_syms = [s for s in range(self.ofdm_symbols) if s not in self.pilot_symbols]
        grid = torch.cartesian_prod(torch.tensor(data_syms), torch.arange(self.fft_size))
        return grid[: self.n_symbols]

    def units(self, feedback: str, subband_size: int) -> torch.Tensor:
        """(k/2,) int64: the feedback unit of each carried symbol (see the module docstring)."""
        if feedback == "re":
            return torch.arange(self.n_symbols)
        if feedback == "subband":
            return self.positions[:, 1] // subband_size
        return torch.zeros(self.n_symbols, dtype=torch.long)

    def n_units(self, feedback: str, subband_size: int) -> int:
        if feedback == "re":
            return self.n_symbols
        if feedback == "subband":
            return math.ceil(self.fft_size / subband_size)
        return 1


@dataclass
class CsiFeedback:
    """What the transmitter knows of the legitimate ``ofdm`` link for each of B frames (docs/design.md §3, OFDM).

    codes: (B, U) uint8, the quantised noise level sigma^2 of each feedback unit (:func:`quantise_csi`).
    units: (k/2,) int64, the unit of each complex symbol (:meth:`GridLayout.units`); static for a link config."""

    codes: torch.Tensor
    units: torch.Tensor

    @classmethod
    def per_symbol(cls, codes: torch.Tensor) -> CsiFeedback:
        """Feedback with one unit per complex symbol: codes (B, k/2) uint8, as the wire carries them."""
        return cls(codes, torch.arange(codes.shape[1]))

    def symbol_codes(self) -> torch.Tensor:
        """(B, k/2) uint8: each complex symbol's code (its unit resolved; the wire needs no unit map)."""
        return self.codes[:, self.units]

    def sigma_c2(self) -> torch.Tensor:
        """(B, k) float32: the fed-back noise level of every real latent dim (dequantised)."""
        return per_dim(dequantise_csi(self.codes), self.units)


def check_link(link: LinkConfig, k: int) -> None:
    """Raise :class:`ConfigError` (one line) if ``link`` cannot carry a frame of ``k`` real values: an ``ofdm``
    grid whose channel window is larger than :data:`MAX_WINDOW_MB` (checked first, before anything is built), with
    too few data REs for k/2 symbols, or a subband wider than the grid. A ``flat`` link always can."""
    if link.phy != "ofdm":
        return
    size = window_bytes(link)
    if size > MAX_WINDOW_MB * 2**20:
        raise ConfigError(
            f"an OFDM channel window of {link.feedback_delay + WINDOW_FRAMES} frames x {link.ofdm_symbols} OFDM "
            f"symbols x {link.fft_size} subcarriers takes {size / 2**20:.1f} MB; at most {MAX_WINDOW_MB} MB "
            "(use fewer subcarriers or OFDM symbols)")
    lay = GridLayout.of(link, k)
    if lay.data_res < lay.n_symbols:
        raise ConfigError(
            f"an OFDM grid of {lay.ofdm_symbols} OFDM symbols x {lay.fft_size} subcarriers with "
            f"{len(lay.pilot_symbols)} pilot symbols has {lay.data_res} data REs; a frame of k={k} real values needs "
            f"{lay.n_symbols} (raise fft_size or ofdm_symbols, or use fewer pilot symbols)")
    if link.feedback == "subband" and link.subband_size > link.fft_size:
        raise ConfigError(f"subband_size={link.subband_size} exceeds fft_size={link.fft_size}")


def quantise_csi(sigma2: torch.Tensor) -> torch.Tensor:
    """Noise levels sigma^2 (any shape, linear) -> uint8 codes of their dB values (step CSI_STEP_DB, clipped)."""
    lo, hi = CSI_RANGE_DB
    db = 10.0 * torch.log10(sigma2.to(torch.float64).clamp_min(1e-30))
    return torch.round((db.clamp(lo, hi) - lo) / CSI_STEP_DB).to(torch.uint8)


def dequantise_csi(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes -> sigma^2 (float32, linear), the inverse of :func:`quantise_csi` up to its step."""
    return torch.pow(10.0, (CSI_RANGE_DB[0] + codes.to(torch.float64) * CSI_STEP_DB) / 10.0).to(torch.float32)


def per_dim(unit_values: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
    """Per-unit values (B, U) -> per real latent dim (B, k): symbol j's unit is ``units[j]``; its two reals share it."""
    return unit_values[:, units].repeat_interleave(2, dim=-1)
