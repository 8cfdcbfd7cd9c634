"""Multi-antenna flat links on Sionna: arrays, channels and the legitimate receiver's CSI (docs/design.md §3,
multi-antenna links and null-space self-noise).

A transmitter with ``n_tx`` antennas reaches a listener with ``n_rx`` antennas through one matrix H (n_rx, n_tx) per
frame (block fading, narrowband), with E|H_ij|^2 = 1 so that ``snr_db`` stays Es/N0 per receive antenna at unit total
transmit power. Two channel models:

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

Eavesdroppers. An eavesdropper link draws its own H (its own generator: another position). ``correlation`` rho_e
mixes in the legitimate channel: each of its antennas' rows is rho_e h + sqrt(1 - rho_e^2) g_i, so rho_e is the
correlation coefficient between each eavesdropper antenna's channel and the legitimate one (for Rayleigh in
isotropic scattering, an antenna d_e wavelengths from the legitimate one has rho_e = J0(2 pi d_e); 0 beyond about
0.4 wavelengths, rho_e = 0.9 at 0.1 wavelengths).

Sionna is imported when a link first draws (about 3.5 s), so :class:`AntennaConfig` validates without it.

Randomness. Everything comes from the link's own generator, in this order: the channel then (and its aging
innovation), the pilot noise (legitimate link, :meth:`~MimoLink.feedback`), then the data noise (:meth:`~MimoLink.carry`).
With n_tx = n_rx = 1, perfect CSI and no delay a link draws exactly what a flat Rayleigh link draws
(:func:`diffsem.phy.flat.apply_flat`): the gains, then the noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffsem.channel import noise_variance
from diffsem.config import LinkConfig, one_of
from diffsem.errors import ConfigError

if TYPE_CHECKING:
    from sionna.phy.channel.tr38901 import CDL

TX_ANTENNAS: tuple[int, ...] = (1, 2, 4, 8)
MAX_RX_ANTENNAS = 8
ARRAY_MODELS: tuple[str, ...] = ("rayleigh", *(f"CDL-{m}" for m in "ABCDE"))
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

    h: (n, 1, n_rx, n_tx) complex64, each frame's channel when it is sent (the 1 is the channel-use axis: one
    matrix per frame on a flat link). then: (n, 1, n_rx, n_tx) complex64, the same realisation ``feedback_delay``
    frames earlier (what the receiver measured for feedback). n0: the AWGN power per complex symbol per antenna."""

    h: torch.Tensor
    then: torch.Tensor
    n0: float


class MimoLink:
    """One multi-antenna flat link: its settings, its generator and its channel model.

    Use per batch, in frame order: :meth:`draw` the frames' channels, (legitimate link) :meth:`feedback` the CSI
    for them, then :meth:`carry` the transmitted antenna signals over them.

    Parameters
    ----------
    link : LinkConfig
        ``snr_db`` (Es/N0 per receive antenna, dB) of a ``flat`` link; fading and erasure settings are not used.
    array : AntennaConfig
        The link's antennas and channel.
    generator : torch.Generator
        The link's own generator (docs/design.md §3, frame path).
    """

    def __init__(self, link: LinkConfig, array: AntennaConfig, generator: torch.Generator):
        if link.phy != "flat":
            raise ConfigError("multi-antenna links are flat for now (phy='flat'); per-RE null-space self-noise on "
                              "ofdm links is not wired yet")
        self.cfg, self.array, self.gen = link, array, generator
        self.n0 = float(noise_variance(link.snr_db))
        self._cdl = None if array.channel_model == "rayleigh" else _cdl(array, generator)

    @property
    def csi_error(self) -> float:
        """The variance of the fed-back CSI's estimation error per channel entry: N0 for LS, 0 for perfect."""
        return self.n0 if self.array.estimator == "ls" else 0.0

    def _channels(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(now, then), each (n, n_rx, n_tx) complex64."""
        from sionna.phy.channel import GenerateFlatFadingChannel, cir_to_ofdm_channel

        from diffsem.phy.blocks import seeded

        a, d = self.array, self.array.feedback_delay
        if self._cdl is not None:
            coeff, tau = self._cdl(n, 2 if d else 1, 1.0 / (max(d, 1) * FRAME_SECONDS))
            h = cir_to_ofdm_channel(torch.zeros(1), coeff, tau, normalize=False)[:, 0, :, 0, :, :, 0]
            h = h.permute(0, 3, 1, 2).to(torch.complex64)  # (n, time, n_rx, n_tx)
            return h[:, -1], h[:, 0]
        block = seeded(GenerateFlatFadingChannel, self.gen, num_tx_ant=a.n_tx, num_rx_ant=a.n_rx)
        then = block(n)
        rho = a.clarke_rho()
        if d == 0 or rho >= 1.0:
            return then, then
        return (rho * then + math.sqrt(1.0 - rho * rho) * block(n)).to(torch.complex64), then

    def draw(self, n: int, legit: MimoDraw | None = None) -> MimoDraw:
        """The channels of the link's next ``n`` frames. An eavesdropper with ``correlation`` rho_e > 0 is given the
        legitimate link's draw of the same frames and mixes its first antenna's channel into each of its own."""
        now, then = self._channels(n)
        rho = self.array.correlation
        if rho > 0:
            if legit is None:
                raise ConfigError("an eavesdropper correlated with the legitimate receiver needs the legitimate draw")
            mix = math.sqrt(1.0 - rho * rho)
            now = (rho * legit.h[:, 0, :1] + mix * now).to(torch.complex64)
            then = (rho * legit.then[:, 0, :1] + mix * then).to(torch.complex64)
        return MimoDraw(now[:, None], then[:, None], self.n0)

    def feedback(self, draw: MimoDraw) -> torch.Tensor:
        """The receiver's fed-back CSI of the drawn frames, (n, 1, n_rx, n_tx) complex64: its channel
        ``feedback_delay`` frames earlier, exact or LS-estimated from n_tx orthogonal unit pilots (P = I, so
        H_hat = Y_p; draws the pilot noise)."""
        from sionna.phy.channel import AWGN

        from diffsem.phy.blocks import seeded

        if self.array.estimator == "perfect":
            return draw.then
        return seeded(AWGN, self.gen)(draw.then, self.n0)

    def carry(self, x: torch.Tensor, draw: MimoDraw) -> torch.Tensor:
        """Antenna signals x (B, k/2, n_tx) complex64 over the drawn channels: y = H x + n, (B, k/2, n_rx) complex64,
        n ~ CN(0, N0) per receive antenna (draws the noise)."""
        from sionna.phy.channel import AWGN

        from diffsem.phy.blocks import seeded

        b, j, _ = x.shape
        h = draw.h.expand(b, j, *draw.h.shape[2:])
        return seeded(AWGN, self.gen)(torch.einsum("bjrt,bjt->bjr", h, x.to(torch.complex64)), self.n0)


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
