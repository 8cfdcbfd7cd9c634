"""Validated configuration objects (pydantic). Invalid values raise ``ConfigError`` with a readable message."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

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

    snr_db: float = 20.0
    fading: FadingName = "none"
    rician_k: float = 4.0
    erasure_prob: float = 0.0
    phy: PhyName = "flat"
    channel_model: str = "TDL-A"
    delay_spread_ns: float = 100.0
    carrier_ghz: float = 3.5
    speed_kmh: float = 3.0
    fft_size: int = 12
    subcarrier_spacing_khz: float = 30.0
    ofdm_symbols: int = 14
    pilot_symbols: tuple[int, ...] = (2, 11)
    estimator: EstimatorName = "ls"
    feedback: FeedbackName = "re"
    subband_size: int = 4
    feedback_delay: int = 1

    @field_validator("snr_db")
    @classmethod
    def _finite_snr(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"snr_db={v} must be a finite number of dB (e.g. -10 to 30)")
        return v

    @field_validator("rician_k")
    @classmethod
    def _k_factor(cls, v: float) -> float:
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"rician_k={v} must be a finite K factor >= 0 (linear, not dB)")
        return v

    @field_validator("erasure_prob")
    @classmethod
    def _prob(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"erasure_prob={v} must be in [0, 1]")
        return v

    @field_validator("channel_model")
    @classmethod
    def _model(cls, v: str) -> str:
        if v not in CHANNEL_MODELS:
            raise ValueError(f"unknown channel_model {v!r}; use one of {', '.join(CHANNEL_MODELS)}")
        return v

    @field_validator("delay_spread_ns")
    @classmethod
    def _delay_spread(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 < v <= MAX_DELAY_SPREAD_NS):
            raise ValueError(f"delay_spread_ns={v} must be in (0, {MAX_DELAY_SPREAD_NS:g}] ns (38.901: 10-1000 ns)")
        return v

    @field_validator("carrier_ghz")
    @classmethod
    def _carrier(cls, v: float) -> float:
        if not (math.isfinite(v) and 0.5 <= v <= 100.0):
            raise ValueError(f"carrier_ghz={v} must be in [0.5, 100] GHz (the 38.901 models' range)")
        return v

    @field_validator("speed_kmh")
    @classmethod
    def _speed(cls, v: float) -> float:
        if not (math.isfinite(v) and 0 <= v <= MAX_SPEED_KMH):
            raise ValueError(f"speed_kmh={v} must be in [0, {MAX_SPEED_KMH:g}] km/h")
        return v

    @field_validator("subcarrier_spacing_khz")
    @classmethod
    def _scs(cls, v: float) -> float:
        if v not in SUBCARRIER_SPACINGS_KHZ:
            raise ValueError(f"subcarrier_spacing_khz={v} must be one of {', '.join(f'{s:g}' for s in SUBCARRIER_SPACINGS_KHZ)}")
        return v

    @field_validator("fft_size", "ofdm_symbols", "subband_size")
    @classmethod
    def _positive(cls, v: int, info: ValidationInfo) -> int:
        if not 1 <= v <= 4096:
            raise ValueError(f"{info.field_name}={v} must be an integer in [1, 4096]")
        return v

    @field_validator("feedback_delay")
    @classmethod
    def _delay(cls, v: int) -> int:
        if not 0 <= v <= 64:
            raise ValueError(f"feedback_delay={v} must be in [0, 64] frames")
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
