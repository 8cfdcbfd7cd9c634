"""Validated configuration objects (pydantic). Invalid values raise ``ConfigError`` with a readable message."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from diffsem.errors import ConfigError

DatasetName = Literal["mnist", "fashion-mnist"]
FadingName = Literal["none", "rayleigh", "rician"]
PhyName = Literal["flat", "ofdm"]
EstimatorName = Literal["ls", "perfect"]
FeedbackName = Literal["re", "subband", "frame"]
CHANNEL_MODELS: tuple[str, ...] = tuple(f"{f}-{m}" for f in ("TDL", "CDL") for m in "ABCDE")
SUBCARRIER_SPACINGS_KHZ: tuple[float, ...] = (15.0, 30.0, 60.0, 120.0, 240.0)  # 3GPP numerologies mu = 0..4
MAX_DELAY_SPREAD_NS = 5000.0  # 38.901 Table 7.7.3-1 tops out at 1000 ns ("very long"); 5 us is absurd beyond doubt
MAX_SPEED_KMH = 500.0  # high-speed train
DECODE_MODES: tuple[str, ...] = ("direct", "denoise", "selfref")
CLASSIFIERS: tuple[str, ...] = ("matched", "channel")
CHANNEL_TRAINING_SNR_DB = (0.0, 20.0)  # the 'channel' classifier's training range: plain semcom, no self-noise
LATENT_SIDE = 8  # the latent is a (k / 64) x 8 x 8 map


def result_key(classifier: str, mode: str) -> str:
    """Key of an accuracy in a result row: ``direct`` for the matched classifier, ``channel:direct`` otherwise
    (``plain`` is the mode of the system without self-noise)."""
    return mode if classifier == "matched" else f"{classifier}:{mode}"


def parse_result_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`result_key`: ``channel:denoise`` -> (``channel``, ``denoise``), ``direct`` -> (``matched``, ...)."""
    classifier, _, mode = key.rpartition(":")
    return classifier or "matched", mode


def one_of(name: str, value: str, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``; else a ValueError that names them (the one wording for every choice)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class Range:
    """A finite number's accepted interval; ``text`` completes the error message ``"<name>=<value> <text>"``."""

    low: float
    high: float
    text: str
    open_low: bool = False

    def check(self, name: str, value: float) -> float:
        above = value > self.low if self.open_low else value >= self.low
        if not (math.isfinite(value) and above and value <= self.high):
            raise ValueError(f"{name}={value} {self.text}")
        return value


_GRID = Range(1, 4096, "must be an integer in [1, 4096]")
# The numeric link settings; the wire schema's FieldRules (channel_emulator.proto) must lie inside these
# (tests/services/test_svc_phy.py holds the two together).
LINK_RANGES: dict[str, Range] = {
    "snr_db": Range(-math.inf, math.inf, "must be a finite number of dB (e.g. -10 to 30)"),
    "rician_k": Range(0, math.inf, "must be a finite K factor >= 0 (linear, not dB)"),
    "erasure_prob": Range(0, 1, "must be in [0, 1]"),
    "delay_spread_ns": Range(0, MAX_DELAY_SPREAD_NS, f"must be in (0, {MAX_DELAY_SPREAD_NS:g}] ns (38.901: 10-1000 ns)",
                             open_low=True),
    "carrier_ghz": Range(0.5, 100.0, "must be in [0.5, 100] GHz (the 38.901 models' range)"),
    "speed_kmh": Range(0, MAX_SPEED_KMH, f"must be in [0, {MAX_SPEED_KMH:g}] km/h"),
    "fft_size": _GRID,
    "ofdm_symbols": _GRID,
    "subband_size": _GRID,
    "feedback_delay": Range(0, 64, "must be in [0, 64] frames"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    """Shapes shared by encoder, classifier and U-Net.

    k is the number of real latent dimensions (k/2 complex channel symbols); the latent is reshaped to a
    (k/64) x 8 x 8 map so the U-Net sees an image-like tensor.
    """

    dataset: DatasetName = "mnist"
    k: int = 256
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    unet_widths: tuple[int, ...] = (64, 128)
    unet_layers_per_block: int = 1
    num_classes: int = 10

    @field_validator("k")
    @classmethod
    def _k_valid(cls, k: int) -> int:
        if k <= 0 or k % 2:
            raise ValueError(f"k={k} must be a positive even number (k/2 complex symbols per frame)")
        if k % (LATENT_SIDE * LATENT_SIDE):
            raise ValueError(f"k={k} must be a multiple of 64 (the latent is a (k/64) x 8 x 8 map); try 128 or 256")
        return k

    @field_validator("unet_widths")
    @classmethod
    def _widths_valid(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if not widths or any(w % 32 for w in widths):
            raise ValueError(f"unet_widths={widths} must be non-empty multiples of 32 (GroupNorm uses 32 groups)")
        if LATENT_SIDE % (2 ** (len(widths) - 1)):
            raise ValueError(f"{len(widths)} U-Net levels do not divide the 8x8 latent; use at most 4")
        return widths

    @property
    def latent_channels(self) -> int:
        return self.k // (LATENT_SIDE * LATENT_SIDE)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, LATENT_SIDE, LATENT_SIDE)

    @property
    def null_label(self) -> int:
        """Class-embedding index reserved for 'no label' (unconditional U-Net)."""
        return self.num_classes


class LinkConfig(_Strict):
    """One listener's channel: SNR in dB (Es/N0 per complex symbol), fading and erasure, and its physical layer.

    ``phy="flat"`` is the paper's setting: one block-fading gain per frame (``fading``), perfect CSI, zero forcing.
    ``phy="ofdm"`` maps a frame onto an OFDM resource grid over a 3GPP TDL/CDL channel (docs/design.md §3, OFDM);
    its fields (``channel_model`` ... ``feedback_delay``) are ignored by the flat PHY. ``fading`` and ``rician_k``
    are ignored by the OFDM PHY (the 3GPP model decides the fading). Cross-field checks that need the frame size
    k (grid capacity) are :func:`diffsem.phy.check_link`.
    """

    snr_db: float = Field(20.0, description="SNR, Es/N0 per complex symbol (dB)")
    fading: FadingName = Field("none", description="flat: block fading, one gain per frame")
    rician_k: float = Field(4.0, description="flat, rician: K factor (linear)")
    erasure_prob: float = Field(0.0, description="probability that a frame is lost")
    phy: PhyName = Field("flat", description="physical layer: flat (the paper's) or ofdm")
    channel_model: str = Field("TDL-A", description="ofdm: 3GPP model, TDL-A..E or CDL-A..E")
    delay_spread_ns: float = Field(100.0, description="ofdm: RMS delay spread (ns)")
    carrier_ghz: float = Field(3.5, description="ofdm: carrier frequency (GHz)")
    speed_kmh: float = Field(3.0, description="ofdm: UE speed (km/h), sets the Doppler")
    fft_size: int = Field(12, description="ofdm: subcarriers")
    subcarrier_spacing_khz: float = Field(30.0, description="ofdm: subcarrier spacing (kHz)")
    ofdm_symbols: int = Field(14, description="ofdm: OFDM symbols per frame (one slot)")
    pilot_symbols: tuple[int, ...] = Field((2, 11), description="ofdm: indices of the pilot OFDM symbols")
    estimator: EstimatorName = Field("ls", description="ofdm: channel estimation, from pilots (ls) or perfect")
    feedback: FeedbackName = Field("re", description="ofdm: CSI feedback per RE, per subband or per frame")
    subband_size: int = Field(4, description="ofdm: subcarriers per feedback subband")
    feedback_delay: int = Field(1, description="ofdm: frames between a CSI measurement and the frame it shapes")

    @field_validator(*LINK_RANGES)
    @classmethod
    def _in_range(cls, v: float, info: ValidationInfo) -> float:
        return LINK_RANGES[info.field_name].check(info.field_name, v)

    @field_validator("channel_model")
    @classmethod
    def _model(cls, v: str) -> str:
        return one_of("channel_model", v, CHANNEL_MODELS)

    @field_validator("subcarrier_spacing_khz")
    @classmethod
    def _scs(cls, v: float) -> float:
        if v not in SUBCARRIER_SPACINGS_KHZ:
            raise ValueError(f"subcarrier_spacing_khz={v} must be one of {', '.join(f'{s:g}' for s in SUBCARRIER_SPACINGS_KHZ)}")
        return v

    @model_validator(mode="after")
    def _pilots(self) -> LinkConfig:
        p = self.pilot_symbols
        if not p or len(set(p)) != len(p) or not all(0 <= i < self.ofdm_symbols for i in p):
            raise ValueError(f"pilot_symbols={list(p)} must be distinct OFDM symbol indices in [0, {self.ofdm_symbols})"
                             " and at least one")
        if len(p) >= self.ofdm_symbols:
            raise ValueError(f"pilot_symbols={list(p)} leave no OFDM symbol of {self.ofdm_symbols} for data")
        return self


# The settings of an ofdm link that the flat PHY ignores (their descriptions start "ofdm:").
OFDM_FIELDS: tuple[str, ...] = tuple(n for n, f in LinkConfig.model_fields.items() if (f.description or "").startswith("ofdm:"))
PHY_FIELDS: tuple[str, ...] = ("phy", *OFDM_FIELDS)  # a link's physical layer


def link_field_parser(name: str) -> tuple[Callable[[str], Any], tuple[str, ...] | None]:
    """How a command line reads LinkConfig field ``name``: a function from text to its value, and its choices (a
    Literal's; None: the validators decide, and name what they accept). Tuples are comma-separated integers."""
    kind = LinkConfig.model_fields[name].annotation
    if get_origin(kind) is Literal:
        return str, get_args(kind)
    if get_origin(kind) is tuple:
        return int_list, None
    return kind, None  # type: ignore[return-value]  # int, float or str


def int_list(text: str) -> tuple[int, ...]:
    """``'2,11'`` -> (2, 11)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of integers") from None


class PrivacyConfig(_Strict):
    """The privacy level: target timestep t* in [0, T)."""

    t_star: int = 300
    num_train_timesteps: int = 1000

    @model_validator(mode="after")
    def _t_in_range(self) -> PrivacyConfig:
        if not 0 <= self.t_star < self.num_train_timesteps:
            raise ValueError(f"t_star={self.t_star} must be in [0, {self.num_train_timesteps})")
        return self


def build(cls: type[_Strict], **values: object) -> _Strict:
    """Construct a config, turning pydantic's ValidationError into a one-line ``ConfigError``."""
    try:
        return cls(**values)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or cls.__name__}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid {cls.__name__}: {msgs}") from None
