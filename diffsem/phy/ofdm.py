"""The ``ofdm`` PHY on Sionna: a frame on an OFDM resource grid over a 3GPP TDL/CDL channel (docs/design.md §3, OFDM).

Per frame: the k real values become k/2 complex symbols (:func:`diffsem.channel.to_symbols`) on the grid's data REs
(``ResourceGridMapper``, Kronecker pilots on ``pilot_symbols``); the channel H[symbol, subcarrier] of the frame's time
(``TDL``/``CDL`` -> ``cir_to_ofdm_channel``) multiplies each RE (``ApplyOFDMChannel``); ``AWGN`` adds N0 per RE;
the receiver estimates H from the pilots (``LSChannelEstimator`` with linear interpolation) or knows it (perfect
CSI), and ``LMMSEEqualizer`` gives x_hat and its noise variance no_eff per RE. After unpacking, sigma_c^2 of both
real values of a symbol is that RE's no_eff (same units as the flat case's N0 / |h|^2).

Frame timing. A link's frames are back to back: frame i occupies OFDM symbols [i S, (i+1) S) of one continuous
channel, S = ``ofdm_symbols``, each of duration (1 + CP/N) / subcarrier spacing (CP = N * 144/2048, rounded: the
normal cyclic prefix). At 30 kHz and 14 symbols a frame is a 0.5 ms slot, so a feedback delay of d frames is CSI
d x 0.5 ms old. Sionna's TDL/CDL draw a fresh realisation (path phases, angles, Doppler directions) on each call,
so the link draws one continuous channel per window of :data:`WINDOW_FRAMES` frames (32 ms at 0.5 ms a frame,
about one coherence time at 3 km/h and 3.5 GHz), preceded by ``feedback_delay`` lead-in frames of the same
realisation: within a window the channel evolves with its Doppler and frame i's feedback is the same realisation
d frames earlier; each window is an independent realisation (the user moved on), so a long evaluation averages
over many fades. TDL keeps Sionna's average path gain (E|H|^2 = 1 over realisations, LOS included); CDL's
single-antenna gain is not unit, so a CDL window is scaled to unit mean energy.

Randomness. The link's noise generator seeds, on construction, a second generator for the channel process (one
draw), then draws the AWGN and the erasures, so a batch's noise does not depend on when a window was drawn.

As for the flat PHY, drawing and applying the channel are two steps (:meth:`OfdmPhy.draw`, :meth:`OfdmPhy.carry`),
so the CSI of drawn frames can be fed back before they are carried; :class:`diffsem.phy.link.Link` runs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from sionna.phy.channel import AWGN, ApplyOFDMChannel, cir_to_ofdm_channel, subcarrier_frequencies
from sionna.phy.channel.tr38901 import CDL, TDL, PanelArray
from sionna.phy.mimo import StreamManagement
from sionna.phy.ofdm import LMMSEEqualizer, LSChannelEstimator, ResourceGrid, ResourceGridMapper

from diffsem.channel import ChannelOutput, from_symbols, to_symbols
from diffsem.config import LinkConfig
from diffsem.phy.blocks import seeded
from diffsem.phy.grid import WINDOW_FRAMES, CsiFeedback, GridLayout, check_link, quantise_csi

NORMAL_CP = 144 / 2048  # the normal cyclic prefix as a fraction of the FFT size


@dataclass
class OfdmDraw:
    """The channel of ``n`` consecutive frames of a link: h (n, S, F) complex64 (OFDM symbols x subcarriers),
    n0 (the AWGN level of these frames, per complex symbol), the index of the first frame, csi (n, k/2) float32 the
    receiver's expected noise N0 (1 + e) / |H|^2 at each carried RE (e: estimation error per unit N0, 0 with perfect
    CSI), and stale (n, k/2) the same ``feedback_delay`` frames earlier."""

    h: torch.Tensor
    n0: float
    first_frame: int
    csi: torch.Tensor
    stale: torch.Tensor

    def subcarrier_snr_db(self) -> torch.Tensor:
        """(n, F) float32: each frame's SNR per subcarrier, 10 log10(mean over OFDM symbols of |H|^2 / N0), dB
        (what a dashboard draws as a heat strip)."""
        return (10 * torch.log10(self.h.abs().pow(2).mean(dim=1) / self.n0)).to(torch.float32)

    def __len__(self) -> int:
        return self.h.shape[0]

    def frames(self, start: int, stop: int) -> OfdmDraw:
        """Frames [start, stop) of this draw: every per-frame tensor sliced, the first frame index moved."""
        return replace(self, h=self.h[start:stop], csi=self.csi[start:stop], stale=self.stale[start:stop],
                       first_frame=self.first_frame + start)


class OfdmPhy:
    """The ofdm channel of one link: its grid, its 3GPP channel process and its clock (frames drawn so far).

    Parameters: link, the link's settings (``phy="ofdm"``); generator, the link's noise generator (one draw seeds the
    channel process, then AWGN and erasures); k, real values per frame.

    Use in frame order: :meth:`draw` the next frames' channel, then (legitimate link) :meth:`feedback` for them,
    then :meth:`carry` the transmitted frames over it. It is stateful: consecutive calls continue its channel.
    """

    def __init__(self, link: LinkConfig, generator: torch.Generator, k: int):
        if link.phy != "ofdm":
            raise ValueError("OfdmPhy needs a LinkConfig with phy='ofdm'")
        check_link(link, k)
        self.cfg, self.gen, self.layout = link, generator, GridLayout.of(link, k)
        self.units = self.layout.units(link.feedback, link.subband_size)
        self.n_units = self.layout.n_units(link.feedback, link.subband_size)
        self.channel = GridChannel(link, channel_generator(generator))
        self.rg = resource_grid(link, self.layout)
        self.mapper = ResourceGridMapper(self.rg, device="cpu")
        self.apply = ApplyOFDMChannel(add_awgn=False, device="cpu")
        self.estimator = LSChannelEstimator(self.rg, interpolation_type="lin", device="cpu")
        self.equalizer = LMMSEEqualizer(self.rg, StreamManagement(np.ones([1, 1]), 1), device="cpu")
        self.err_factor = ls_error_factor(link, self.layout, self.estimator)
        self.frame = 0

    @property
    def frame_seconds(self) -> float:
        """Duration of one frame (S OFDM symbols with their cyclic prefixes), seconds."""
        return self.cfg.ofdm_symbols * self.rg.ofdm_symbol_duration

    def _csi(self, h: torch.Tensor, n0: float) -> torch.Tensor:
        """(n, k/2) float32: the legitimate receiver's expected post-equalisation noise at each carried RE of
        channels h (n, S, F), N0 (1 + e) / |H|^2 with e its estimator's error per unit N0 (0 with perfect CSI)."""
        pos = self.layout.positions
        gain2 = h[:, pos[:, 0], pos[:, 1]].abs().pow(2).clamp_min(1e-12)
        return (n0 * (1.0 + self.err_factor) / gain2).to(torch.float32)

    def draw(self, n: int, n0: float) -> OfdmDraw:
        """The channel of the link's next ``n`` frames at AWGN ``n0`` per complex symbol (advances its clock)."""
        h, before = (c[..., 0, 0] for c in self.channel.frames(self.frame, n))
        out = OfdmDraw(h, n0, self.frame, self._csi(h, n0), self._csi(before, n0))
        self.frame += n
        return out

    def _group(self, csi: torch.Tensor) -> torch.Tensor:
        """(n, k/2) per-RE levels -> (n, U) mean level per feedback unit."""
        total = torch.zeros(csi.shape[0], self.n_units).index_add_(1, self.units, csi)
        count = torch.bincount(self.units, minlength=self.n_units).clamp_min(1)
        return total / count

    def feedback(self, draw: OfdmDraw) -> CsiFeedback:
        """The transmitter's CSI for the drawn frames: frame i gets the measurement of frame i - ``feedback_delay``
        (the same realisation; at that frame's channel and this draw's N0), grouped per unit and quantised."""
        return CsiFeedback(quantise_csi(self._group(draw.stale)), self.units)

    def carry(self, x: torch.Tensor, draw: OfdmDraw) -> ChannelOutput:
        """Send real latents x (B, k) over the drawn channel (B frames): map, H, AWGN, estimate, LMMSE, unpack.

        Output: latent (B, k), sigma_c2 (B, k) = no_eff per RE (both reals of a symbol), gain (B,) mean H over the
        carried REs, erased (B, k), csi (B, k/2) = draw.csi, subcarrier_snr_db (B, F). Draws the AWGN, then the
        erasures."""
        b, ns = x.shape[0], self.layout.n_symbols
        c = to_symbols(x.detach().to("cpu", torch.float32))
        data = torch.zeros(b, self.rg.num_data_symbols, dtype=torch.complex64)
        data[:, :ns] = c
        grid = self.mapper(data[:, None, None])
        h = draw.h[:, None, None, None, None]
        y = seeded(AWGN, self.gen)(self.apply(grid, h), draw.n0)
        no = torch.tensor(draw.n0, dtype=torch.float32)
        if self.cfg.estimator == "ls":
            h_hat, err_var = self.estimator(y, no)
        else:
            h_hat, err_var = h, torch.zeros((), dtype=torch.float32)
        x_hat, no_eff = self.equalizer(y, h_hat, err_var, no)
        x_hat, no_eff = x_hat[:, 0, 0, :ns], no_eff[:, 0, 0, :ns].to(torch.float32)
        erased_sym = torch.zeros(x_hat.shape, dtype=torch.bool)
        if self.cfg.erasure_prob > 0:
            erased_sym = torch.rand(x_hat.shape, generator=self.gen) < self.cfg.erasure_prob
            x_hat = torch.where(erased_sym, torch.zeros_like(x_hat), x_hat)
        pos = self.layout.positions
        return ChannelOutput(latent=from_symbols(x_hat).to(x.device), sigma_c2=no_eff.repeat_interleave(2, -1).to(x.device),
                             gain=draw.h[:, pos[:, 0], pos[:, 1]].mean(dim=1),
                             erased=erased_sym.repeat_interleave(2, dim=-1).to(x.device), csi=draw.csi,
                             subcarrier_snr_db=draw.subcarrier_snr_db())


def channel_generator(generator: torch.Generator) -> torch.Generator:
    """The channel process's own generator, seeded by one draw from the link's ``generator`` (so a batch's noise does
    not depend on when a window was drawn)."""
    return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))


def resource_grid(link: LinkConfig, layout: GridLayout) -> ResourceGrid:
    """The link's Sionna resource grid: Kronecker pilots on ``pilot_symbols``, fixed QPSK pilot values (Sionna's are
    drawn from its global generator; both ends must know them), the normal cyclic prefix."""
    rg = ResourceGrid(num_ofdm_symbols=link.ofdm_symbols, fft_size=link.fft_size,
                      subcarrier_spacing=link.subcarrier_spacing_khz * 1e3, num_tx=1, num_streams_per_tx=1,
                      cyclic_prefix_length=round(link.fft_size * NORMAL_CP), pilot_pattern="kronecker",
                      pilot_ofdm_symbol_indices=list(layout.pilot_symbols), device="cpu")
    rg.pilot_pattern.pilots = torch.full(rg.pilot_pattern.pilots.shape, complex(1, 1) / math.sqrt(2),
                                         dtype=torch.complex64)
    return rg


def ls_error_factor(link: LinkConfig, layout: GridLayout, estimator: LSChannelEstimator | None = None) -> torch.Tensor:
    """(k/2,) float32: the LS estimator's error variance at each carried RE per unit N0 (Sionna's LS err_var after
    linear interpolation, no/|pilot|^2 at the pilots; it does not depend on y); zero with perfect CSI."""
    if link.estimator != "ls":
        return torch.zeros(layout.n_symbols)
    if estimator is None:
        estimator = LSChannelEstimator(resource_grid(link, layout), interpolation_type="lin", device="cpu")
    y = torch.zeros(1, 1, 1, link.ofdm_symbols, link.fft_size, dtype=torch.complex64)
    _, err_var = estimator(y, torch.tensor(1.0))
    pos = layout.positions
    return err_var[0, 0, 0, 0, 0][pos[:, 0], pos[:, 1]].to(torch.float32)


class GridChannel:
    """A link's continuous 3GPP channel on its OFDM grid, drawn one window at a time (see the module docstring):
    between ``n_tx`` transmit and ``n_rx`` receive antennas (TDL: i.i.d. antennas, Sionna's ``num_tx_ant`` /
    ``num_rx_ant``; CDL: ULAs of omni, vertically polarised elements at half-wavelength spacing, ``PanelArray``),
    every entry from the channel ``generator``. One antenna each is the single-antenna ofdm link's channel."""

    def __init__(self, link: LinkConfig, generator: torch.Generator, n_rx: int = 1, n_tx: int = 1):
        self.cfg, self.n_rx, self.n_tx = link, n_rx, n_tx
        self.model = _channel_model(link, generator, n_rx, n_tx)
        self.freqs = subcarrier_frequencies(link.fft_size, link.subcarrier_spacing_khz * 1e3, device="cpu")
        cp = round(link.fft_size * NORMAL_CP)
        self.symbol_seconds = (1 + cp / link.fft_size) / (link.subcarrier_spacing_khz * 1e3)
        self._window: tuple[int, torch.Tensor] | None = None

    def _window_h(self, w: int) -> torch.Tensor:
        """(d + WINDOW_FRAMES, S, F, n_rx, n_tx) complex64: window ``w``'s channel after d = ``feedback_delay``
        lead-in frames (drawn once, when first needed; windows are drawn in order from the channel generator)."""
        if self._window is None or self._window[0] != w:
            s, frames = self.cfg.ofdm_symbols, self.cfg.feedback_delay + WINDOW_FRAMES
            a, tau = self.model(1, frames * s, 1.0 / self.symbol_seconds)
            h = cir_to_ofdm_channel(self.freqs, a, tau, normalize=False)[0, 0, :, 0]  # (n_rx, n_tx, time, F)
            h = h.permute(2, 3, 0, 1).reshape(frames, s, self.cfg.fft_size, self.n_rx, self.n_tx)
            if self.cfg.channel_model.startswith("CDL"):
                h = h / h.abs().pow(2).mean().sqrt()
            self._window = (w, h.to(torch.complex64))
        return self._window[1]

    def frames(self, first: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Channels (n, S, F, n_rx, n_tx) complex64 of frames [first, first + n) and of each one ``feedback_delay``
        frames earlier (the same realisation)."""
        now, before, f, d = [], [], first, self.cfg.feedback_delay
        while f < first + n:
            w, off = divmod(f, WINDOW_FRAMES)
            take = min(WINDOW_FRAMES - off, first + n - f)
            h = self._window_h(w)
            now.append(h[d + off:d + off + take])
            before.append(h[off:off + take])
            f += take
        return torch.cat(now), torch.cat(before)


def _channel_model(link: LinkConfig, generator: torch.Generator, n_rx: int = 1, n_tx: int = 1) -> TDL | CDL:
    """The link's 3GPP model (downlink), drawing from the link's channel generator."""
    family, model = link.channel_model.split("-")
    speed = link.speed_kmh / 3.6
    common = {"delay_spread": link.delay_spread_ns * 1e-9, "carrier_frequency": link.carrier_ghz * 1e9,
              "min_speed": speed, "max_speed": speed}
    if family == "TDL":
        return seeded(TDL, generator, model=model, num_rx_ant=n_rx, num_tx_ant=n_tx, **common)

    def ula(n: int) -> PanelArray:
        return PanelArray(num_rows_per_panel=1, num_cols_per_panel=n, polarization="single", polarization_type="V",
                          antenna_pattern="omni", carrier_frequency=link.carrier_ghz * 1e9, device="cpu")

    return seeded(CDL, generator, model=model, ut_array=ula(n_rx), bs_array=ula(n_tx), direction="downlink", **common)
