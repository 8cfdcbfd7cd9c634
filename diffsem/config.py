"""Validated configuration objects (pydantic). Invalid values raise ``ConfigError`` with a readable message."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from diffsem.errors import ConfigError

DatasetName = Literal["mnist", "fashion-mnist"]
FadingName = Literal["none", "rayleigh", "rician"]
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
    """One listener's channel: SNR in dB (Es/N0 per complex symbol), fading and erasure."""

    snr_db: float = 20.0
    fading: FadingName = "none"
    rician_k: float = 4.0
    erasure_prob: float = 0.0

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
