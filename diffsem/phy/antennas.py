"""Multi-antenna links on Sionna: arrays, channels and the legitimate receiver's CSI (docs/design.md §3,
multi-antenna links and null-space self-noise).

A transmitter with ``n_tx`` antennas reaches a listener with ``n_rx`` antennas through one matrix H (n_rx, n_tx) per
frame on a ``flat`` link (block fading, narrowband), or one per resource element on an ``ofdm`` link (below), with
E|H_ij|^2 = 1 so that ``snr_db`` stays Es/N0 per receive antenna at unit total transmit power. Two flat channel models:

- ``rayleigh``: i.i.d. CN(0, 1) entries (Sionna's ``GenerateFlatFadingChannel``), the rich-scattering case.
- ``CDL-A`` ... ``CDL-E``: Sionna's 3GPP TR 38.901 ``CDL`` between two ``AntennaArray``s of vertically polarised omni
  elements at half-wavelength spacing (a ULA of ``n_tx`` at the base station, ``n_rx`` at the user), taken at the
  carrier (the sum of the path coefficients: ``cir_to_ofdm_channel`` at 0 Hz). Omni elements keep E|H_ij|^2 = 1
  (measured 0.99-1.01 for A-E over 2000 draws). The clusters' angles are the model's table, so two CDL links see
  the same angular spectrum with independent phases and ray couplings: an eavesdropper in the same scattering
  environment, at another position.

Each frame is an independent realisation (as the flat PHY's Rayleigh fading with coherence 1), so an evaluation
averages over fades; within a frame's realisation the channel evolves with the UE's Doppler, which is what makes
fed-back CSI stale.

CSI (the legitimate link's :meth:`MimoLink.feedback`). The receiver measured its channel ``feedback_delay`` frames
(d x :data:`FRAME_SECONDS`) before the frame it shapes:

- Rayleigh ages with Clarke's correlation rho = J0(2 pi f_D d T) (Jakes' isotropic scattering, f_D = v f_c / c):
  H_now = rho H_then + sqrt(1 - rho^2) E, E i.i.d. CN(0, 1); CDL evolves each path with its own Doppler between
  two samples d T apart.
- ``estimator="ls"``: from one orthogonal pilot per transmit antenna (n_tx channel uses, unit power each, pilot
  matrix P = I), the least-squares estimate H_hat = Y_p P^H (P P^H)^-1 = H_then + N_p, N_p i.i.d. CN(0, N0): error
  variance N0 per entry. ``perfect``: H_hat = H_then. Feedback itself is error-free and unquantised.

On an ``ofdm`` link (:class:`~diffsem.phy.ofdm.GridChannel`) each of a frame's k/2 symbols sits on its resource
element (RE) of the link's grid (:class:`~diffsem.phy.grid.GridLayout`) and meets that RE's H[symbol, subcarrier]
(n_rx, n_tx) of the link's continuous 3GPP channel: TDL with i.i.d. antennas, or CDL between ULAs, drawn in windows
as for a single-antenna ofdm link; the cyclic prefix makes each RE a flat MIMO channel, so y = H x + n per RE. The
channel, its Doppler and the legitimate CSI's estimator and delay are the link's ``LinkConfig`` settings (the
``AntennaConfig`` must agree, or leave them unset). LS CSI there comes from orthogonal pilots per transmit antenna
on the pilot OFDM symbols at the single-antenna grid's pilot power, so each entry's error is that grid's
interpolated LS error, N0 e(RE) (:func:`~diffsem.phy.ofdm.ls_error_factor`). CSI feedback is per RE.

Eavesdroppers. An eavesdropper link draws its own H (its own generator: another position). ``correlation`` rho_e
mixes in the legitimate channel: each of its antennas' rows is rho_e h + sqrt(1 - rho_e^2) g_i, so rho_e is the
correlation coefficient between each eavesdropper antenna's channel and the legitimate one (for Rayleigh in
isotropic scattering, an antenna d_e wavelengths from the legitimate one has rho_e = J0(2 pi d_e); 0 beyond about
0.4 wavelengths, rho_e = 0.9 at 0.1 wavelengths).

Sionna is imported when a link first draws (about 3.5 s), so :class:`AntennaConfig` validates without it.

Randomness. Everything comes from the link's own generator, in this order: the channel then (and its aging
innovation; an ofdm link instead draws its channel process's seed once, at construction), the pilot noise
(legitimate link, :meth:`~MimoLink.feedback`), then the data noise (:meth:`~MimoLink.carry`). With n_tx = n_rx = 1,
perfect CSI and no delay a flat link draws exactly what a flat Rayleigh link draws
(:func:`diffsem.phy.flat.apply_flat`): the gains, then the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffsem.channel import noise_variance
from diffsem.config import ARRAY_MODELS, LinkConfig, one_of
from diffsem.errors import ConfigError

if TYPE_CHECKING:
    from sionna.phy.channel.tr38901 import CDL

TX_ANTENNAS: tuple[int, ...] = (1, 2, 4, 8)
MAX_RX_ANTENNAS = 8
FRAME_SECONDS = 0.5e-3  # one slot at 30 kHz subcarrier spacing, as an ofdm frame of 14 OFDM symbols
SPEED_OF_LIGHT = 299_792_458.0


class AntennaConfig(BaseModel):
    """One link's antennas and multi-antenna channel; the SNR is its :class:`~diffsem.config.LinkConfig`'s.

    ``n_tx`` is the transmitter's (every link of a frame must agree); ``n_rx``, ``correlation`` are the listener's;
    ``estimator``, ``feedback_delay`` and ``speed_kmh`` shape the CSI the legitimate receiver feeds back."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_tx: int = Field(1, description="transmit antennas: 1, 2, 4 or 8")
    n_rx: int = Field(1, description="this listener's receive antennas: 1 to 8")
    channel_model: str = Field("rayleigh", description="rayleigh (i.i.d.) or CDL-A..E (3GPP, omni ULAs)")
    carrier_ghz: float = Field(3.5, description="carrier frequency (GHz): Doppler and array geometry")
    speed_kmh: float = Field(3.0, description="UE speed (km/h): how fast fed-back CSI ages")
    estimator: Literal["perfect", "ls"] = Field("perfect", description="legitimate CSI: exact, or LS from pilots")
    feedback_delay: int = Field(0, description="frames between the CSI measurement and the frame it shapes")
    correlation: float = Field(0.0, description="eavesdropper: correlation of each antenna's channel with the "
                                                "legitimate receiver's, in [0, 1]")

    @field_validator("n_tx")
    @classmethod
    def _n_tx(cls, v: int) -> int:
        if v not in TX_ANTENNAS:
            raise ValueError(f"n_tx={v} must be one of {', '.join(map(str, TX_ANTENNAS))}")
        return v

    @field_validator("n_rx")
    @classmethod
    def _n_rx(cls, v: int) -> int:
        if not 1 <= v <= MAX_RX_ANTENNAS:
            raise ValueError(f"n_rx={v} must be an integer in [1, {MAX_RX_ANTENNAS}]")
        return v

    @field_validator("channel_model")
    @classmethod
    def _model(cls, v: str) -> str:
        return one_of("channel_model", v, ARRAY_MODELS)

    @field_validator("carrier_ghz", "speed_kmh", "correlation", "feedback_delay")
    @classmethod
    def _ranges(cls, v: float, info: object) -> float:
        low, high, unit = {"carrier_ghz": (0.5, 100.0, "GHz"), "speed_kmh": (0.0, 500.0, "km/h"),
                           "correlation": (0.0, 1.0, ""), "feedback_delay": (0, 64, "frames")}[info.field_name]
        if not (math.isfinite(v) and low <= v <= high):
            raise ValueError(f"{info.field_name}={v} must be in [{low:g}, {high:g}] {unit}".rstrip())
        return v

    def clarke_rho(self) -> float:
        """J0(2 pi f_D d T): the correlation of a Rayleigh entry with itself ``feedback_delay`` frames earlier."""
        f_d = self.speed_kmh / 3.6 * self.carrier_ghz * 1e9 / SPEED_OF_LIGHT
        tau = self.feedback_delay * FRAME_SECONDS
        return float(torch.special.bessel_j0(torch.tensor(2 * math.pi * f_d * tau, dtype=torch.float64)))


@dataclass
class MimoDraw:
    """The channels of ``n`` frames of one link.

    h: (n, M, n_rx, n_tx) complex64, each frame's channel when it is sent (M is the channel-use axis: 1 on a flat
    link, one matrix per frame; k/2 on an ofdm link, one per carried RE). then: the same shape, the same realisation
    ``feedback_delay`` frames earlier (what the receiver measured for feedback). n0: the AWGN power per complex symbol
    per antenna."""

    h: torch.Tensor
    then: torch.Tensor
    n0: float


class MimoLink:
    """One multi-antenna link: its settings, its generator and its channel model.

    Use per batch, in frame order: :meth:`draw` the frames' channels, (legitimate link) :meth:`feedback` the CSI
    for them, then :meth:`carry` the transmitted antenna signals over them.

    Parameters
    ----------
    link : LinkConfig
        ``snr_db`` (Es/N0 per receive antenna, dB); on an ``ofdm`` link also the grid, the 3GPP channel and the
        legitimate CSI (its ``feedback`` must be ``re``). Fading and erasure settings are not used.
    array : AntennaConfig
        The link's antennas (and, on a flat link, its channel and CSI).
    generator : torch.Generator
        The link's own generator (docs/design.md §3, frame path).
    k : int, optional
        Real values per frame: needed on an ``ofdm`` link, whose grid carries k/2 symbols.
    """

    def __init__(self, link: LinkConfig, array: AntennaConfig, generator: torch.Generator, k: int | None = None):
        self.cfg, self.array, self.gen = link, array, generator
        self.n0 = float(noise_variance(link.snr_db))
        self._cdl = None if array.channel_model == "rayleigh" or link.phy == "ofdm" else _cdl(array, generator)
        self._grid = None if link.phy == "flat" else _GridChannels(link, array, generator, k)

    def set_snr(self, snr_db: float) -> None:
        """Run the link at ``snr_db`` from now on (Es/N0 per receive antenna, dB): its channel and generator stay,
        so a live link keeps its channel (an ofdm link's frame clock) while its SNR follows a trace or an offset."""
        if snr_db != self.cfg.snr_db:  # a trace or an offset changes it now and then; most batches keep it
            self.n0 = float(noise_variance(snr_db))
            self.cfg = self.cfg.model_copy(update={"snr_db": snr_db})

    @property
    def csi_error(self) -> float | torch.Tensor:
        """The variance of the fed-back CSI's estimation error per channel entry: 0 for perfect; for LS N0 (flat),
        or N0 e(RE) per carried RE, (k/2,) float32 (ofdm)."""
        if self._grid is not None:
            return self.n0 * self._grid.err if self._grid.ls else 0.0
        return self.n0 if self.array.estimator == "ls" else 0.0

    def _channels(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(now, then), each (n, M, n_rx, n_tx) complex64."""
        from sionna.phy.channel import GenerateFlatFadingChannel, cir_to_ofdm_channel

        from diffsem.phy.blocks import seeded

        if self._grid is not None:
            return self._grid.next(n)
        a, d = self.array, self.array.feedback_delay
        if self._cdl is not None:
            coeff, tau = self._cdl(n, 2 if d else 1, 1.0 / (max(d, 1) * FRAME_SECONDS))
            h = cir_to_ofdm_channel(torch.zeros(1), coeff, tau, normalize=False)[:, 0, :, 0, :, :, 0]
            h = h.permute(0, 3, 1, 2).to(torch.complex64)  # (n, time, n_rx, n_tx)
            return h[:, -1:], h[:, :1]
        block = seeded(GenerateFlatFadingChannel, self.gen, num_tx_ant=a.n_tx, num_rx_ant=a.n_rx)
        then = block(n)[:, None]
        rho = a.clarke_rho()
        if d == 0 or rho >= 1.0:
            return then, then
        return (rho * then + math.sqrt(1.0 - rho * rho) * block(n)[:, None]).to(torch.complex64), then

    def draw(self, n: int, legit: MimoDraw | None = None) -> MimoDraw:
        """The channels of the link's next ``n`` frames. An eavesdropper with ``correlation`` rho_e > 0 is given the
        legitimate link's draw of the same frames and mixes its first antenna's channel into each of its own."""
        now, then = self._channels(n)
        rho = self.array.correlation
        if rho > 0:
            if legit is None:
                raise ConfigError("an eavesdropper correlated with the legitimate receiver needs the legitimate draw")
            mix = math.sqrt(1.0 - rho * rho)
            now = (rho * legit.h[:, :, :1] + mix * now).to(torch.complex64)
            then = (rho * legit.then[:, :, :1] + mix * then).to(torch.complex64)
        return MimoDraw(now, then, self.n0)

    def feedback(self, draw: MimoDraw) -> torch.Tensor:
        """The receiver's fed-back CSI of the drawn frames, (n, M, n_rx, n_tx) complex64: its channel
        ``feedback_delay`` frames earlier, exact or LS-estimated from n_tx orthogonal pilots (flat: unit pilots,
        P = I, so H_hat = Y_p, error N0 per entry; ofdm: error N0 e(RE) per entry; draws the pilot noise)."""
        from sionna.phy.channel import AWGN

        from diffsem.phy.blocks import seeded

        error = self.csi_error
        if isinstance(error, float) and error == 0.0:
            return draw.then
        no = error if isinstance(error, float) else error[None]  # per RE: Sionna pads (1, k/2) to (1, k/2, 1, 1)
        return seeded(AWGN, self.gen)(draw.then, no)

    def carry(self, x: torch.Tensor, draw: MimoDraw) -> torch.Tensor:
        """Antenna signals x (B, k/2, n_tx) complex64 over the drawn channels: y = H x + n, (B, k/2, n_rx) complex64,
        n ~ CN(0, N0) per receive antenna (draws the noise)."""
        from sionna.phy.channel import AWGN

        from diffsem.phy.blocks import seeded

        b, j, _ = x.shape
        h = draw.h.expand(b, j, *draw.h.shape[2:])
        return seeded(AWGN, self.gen)(torch.einsum("bjrt,bjt->bjr", h, x.to(torch.complex64)), self.n0)


class _GridChannels:
    """An ofdm link's per-RE channels for :class:`MimoLink`: its continuous 3GPP channel on the grid (from a channel
    generator seeded by one draw of the link's), taken at the k/2 carried REs, frame after frame."""

    def __init__(self, link: LinkConfig, array: AntennaConfig, generator: torch.Generator, k: int | None):
        from diffsem.phy.grid import GridLayout
        from diffsem.phy.ofdm import GridChannel, channel_generator, ls_error_factor

        check_grid_array(link, array, k)
        assert k is not None
        self.layout = GridLayout.of(link, k)
        self.channel = GridChannel(link, channel_generator(generator), array.n_rx, array.n_tx)
        self.ls = link.estimator == "ls"
        self.err = ls_error_factor(link, self.layout)
        self.frame = 0

    def next(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(now, then) of the next ``n`` frames at the carried REs, each (n, k/2, n_rx, n_tx) complex64."""
        now, then = self.channel.frames(self.frame, n)
        self.frame += n
        pos = self.layout.positions
        return now[:, pos[:, 0], pos[:, 1]], then[:, pos[:, 0], pos[:, 1]]


def check_grid_array(link: LinkConfig, array: AntennaConfig, k: int | None) -> None:
    """Raise ``ConfigError`` (one line) unless ``array`` can run on the ofdm ``link`` with frames of ``k`` real
    values: the grid carries k/2 symbols (:func:`~diffsem.phy.grid.check_link`), the CSI is fed back per RE, the
    antennas leave the link's channel and CSI settings unset or agree with them, and one channel window for
    n_rx x n_tx antennas fits :data:`~diffsem.phy.grid.MAX_WINDOW_MB`. What :class:`MimoLink` checks when it
    builds an ofdm link, before anything is drawn (the emulator checks it when the settings change)."""
    from diffsem.phy.grid import MAX_WINDOW_MB, check_link, window_bytes

    if k is None:
        raise ConfigError("a multi-antenna ofdm link needs the frame size k (its grid carries k/2 symbols)")
    check_link(link, k)
    _check_grid_antennas(link, array)
    size = window_bytes(link) * array.n_rx * array.n_tx
    if size > MAX_WINDOW_MB * 2**20:
        raise ConfigError(f"an OFDM channel window for {array.n_rx} x {array.n_tx} antennas takes "
                          f"{size / 2**20:.1f} MB; at most {MAX_WINDOW_MB} MB (use fewer subcarriers, OFDM "
                          "symbols or antennas)")


def _check_grid_antennas(link: LinkConfig, array: AntennaConfig) -> None:
    """On an ofdm link the channel and the CSI are the link's: the antennas' own settings of them must agree or be
    left unset. Raises ``ConfigError`` naming each disagreement."""
    if link.feedback != "re":
        raise ConfigError(f"a multi-antenna ofdm link needs per-RE CSI feedback (feedback='re'); got "
                          f"feedback={link.feedback!r}: the precoder is per RE")
    given = array.model_fields_set
    clash = [f"{name}={getattr(array, name)!r} (the link has {getattr(link, name)!r})"
             for name in ("carrier_ghz", "speed_kmh", "estimator", "feedback_delay")
             if name in given and getattr(array, name) != getattr(link, name)]
    if "channel_model" in given and array.channel_model != link.channel_model:
        clash.append(f"channel_model={array.channel_model!r} (the link has {link.channel_model!r})")
    if clash:
        raise ConfigError("on an ofdm link the channel and CSI are the link's settings; the antennas disagree: "
                          + ", ".join(clash))


def _cdl(array: AntennaConfig, generator: torch.Generator) -> CDL:
    """Sionna's CDL between ULAs of omni, vertically polarised elements at half-wavelength spacing (downlink)."""
    from sionna.phy.channel.tr38901 import CDL, AntennaArray

    from diffsem.phy.blocks import seeded

    def ula(n: int) -> AntennaArray:
        return AntennaArray(num_rows=1, num_cols=n, polarization="single", polarization_type="V",
                            antenna_pattern="omni", carrier_frequency=array.carrier_ghz * 1e9, device="cpu")

    speed = array.speed_kmh / 3.6
    return seeded(CDL, generator, model=array.channel_model.split("-")[1], delay_spread=100e-9,
                  carrier_frequency=array.carrier_ghz * 1e9, ut_array=ula(array.n_rx), bs_array=ula(array.n_tx),
                  direction="downlink", min_speed=speed, max_speed=speed)
