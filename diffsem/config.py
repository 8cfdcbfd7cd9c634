"""Validated configuration objects (pydantic). Invalid values raise ``ConfigError`` with a readable message."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from diffsem.errors import ConfigError, OutOfRangeError

DatasetName = Literal["mnist", "fashion-mnist"]
FadingName = Literal["none", "rayleigh", "rician"]
PhyName = Literal["flat", "ofdm"]
EstimatorName = Literal["ls", "perfect"]
FeedbackName = Literal["re", "subband", "frame"]
CHANNEL_MODELS: tuple[str, ...] = tuple(f"{f}-{m}" for f in ("TDL", "CDL") for m in "ABCDE")
# a flat multi-antenna link's channel (diffsem.phy.antennas): i.i.d. Rayleigh, or 3GPP CDL between ULAs at the carrier
ARRAY_MODELS: tuple[str, ...] = ("rayleigh", *(f"CDL-{m}" for m in "ABCDE"))
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


class BoundError(ValueError):
    """A well-formed setting outside its bound (:class:`diffsem.errors.OutOfRangeError` once built)."""


@dataclass(frozen=True)
class Bound:
    """What a setting accepts, written once beside its field (``Annotated[float, Bound(...)]``): a number in
    [low, high] (``(low, high]`` with ``open_low``) in ``unit``, or one of ``choices`` (a ``Literal`` field's are its
    type's). ``note`` adds what the numbers mean; ``bytes_each``: the memory one unit costs, stated when a value is
    refused. Every reader of a link setting's bound (the emulator, the panel's form, the command lines) reads this."""

    low: float = -math.inf
    high: float = math.inf
    unit: str = ""
    open_low: bool = False
    choices: tuple[Any, ...] = ()
    note: str = ""
    bytes_each: float = 0.0

    @property
    def interval(self) -> str:
        return f"{'(' if self.open_low else '['}{_num(self.low)}, {_num(self.high)}]"

    @property
    def bounded(self) -> bool:
        return bool(self.choices) or math.isfinite(self.low) or math.isfinite(self.high)

    def _u(self, value: object) -> str:
        return f"{value} {self.unit}" if self.unit else f"{value}"

    def check(self, name: str, value: Any) -> Any:
        """``value`` if accepted; else ValueError (malformed: not finite, not a choice) or :class:`BoundError`."""
        if self.choices:
            if value not in self.choices:
                shown = repr(value) if isinstance(value, str) else self._u(value)
                raise ValueError(f"{name}={shown} is not one of {', '.join(_num(c) for c in self.choices)}")
            return value
        if not self.bounded or isinstance(value, bool) or value is None:
            return value
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"{name}={value} must be a finite number" + (f" of {self.unit}" if self.unit else ""))
        if not ((v > self.low if self.open_low else v >= self.low) and v <= self.high):
            text = f"{name}={self._u(value)} is out of range {self._u(self.interval)}"
            if self.note:
                text += f" ({self.note})"
            if self.bytes_each:
                text += (f": {self._u(value)} would hold about {_size(v * self.bytes_each)} per link, the limit about "
                         f"{_size(self.high * self.bytes_each)} (about {_size(self.bytes_each)} each)")
            raise BoundError(text)
        return value


def _num(v: object) -> str:
    """A bound as written: 1000000, 0.5, 15 (never 1e+06), names as they are."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**64:
        return str(int(v))
    return str(v)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def bound_of(model: type[BaseModel], name: str) -> Bound:
    """The :class:`Bound` of field ``name`` (its choices filled from a ``Literal`` type); no bound: accept all."""
    field = model.model_fields[name]
    bound = next((m for m in field.metadata if isinstance(m, Bound)), Bound())
    if not bound.choices and get_origin(field.annotation) is Literal:
        bound = replace(bound, choices=get_args(field.annotation))
    return bound


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


GRID = Bound(1, 4096)
DB = Bound(-100, 100, "dB")
MS = Bound(0, 60_000, "ms")


class LinkConfig(_Strict):
    """One listener's link, every setting of it: the one definition of each setting's type, default, bound (a
    :class:`Bound` in its annotation), unit and meaning (its description). The core's
    :class:`~diffsem.phy.link.Link` runs a link from it, offline and in the emulator; the wire's ``LinkSettings``
    names the same fields, and building this object is how the emulator validates them (docs/design.md §5, link
    settings); the command lines, the panel's form and its ``/api/links/schema`` read it too.

    ``phy="flat"`` is the paper's setting: one block-fading gain per coherence block (``fading``), perfect CSI, zero
    forcing. ``phy="ofdm"`` maps a frame onto an OFDM resource grid over a 3GPP TDL/CDL channel (docs/design.md §3,
    OFDM); its fields (descriptions starting "ofdm:") are ignored by the flat PHY, and the flat ones ("flat:") by
    it. Settings starting "live:" are the emulator's delivery (loss, delay, queue, what the listener is told); the
    offline evaluator delivers every frame at once. Cross-field checks that need the frame size k (grid capacity)
    are :func:`diffsem.phy.check_link`.
    """

    what: ClassVar[str] = "link settings"
    snr_db: Annotated[float, DB] = Field(10.0, description="SNR, Es/N0 per complex symbol (dB)")
    fading: FadingName = Field("none", description="flat: block fading, one gain per coherence block")
    rician_k: Annotated[float, Bound(0, 1e6, note="linear, not dB")] = Field(
        4.0, description="flat, rician: K factor (linear)")
    coherence_frames: Annotated[int, Bound(1, 1_000_000, "frames")] = Field(
        1, description="flat: frames per fading block; 1 = a new gain every frame")
    erasure_prob: Annotated[float, Bound(0, 1)] = Field(0.0, description="per-symbol erasure probability")
    seed: Annotated[int | None, Bound(0, 2**64 - 1)] = Field(
        None, description="seed of the link's generators (fading, noise, erasures; loss and delay apart); setting it "
        "restarts them")
    loss_prob: Annotated[float, Bound(0, 1)] = Field(0.0, description="live: whole-frame loss probability")
    delay_ms: Annotated[float, MS] = Field(0.0, description="live: delivery delay (ms)")
    jitter_ms: Annotated[float, MS] = Field(0.0, description="live: uniform extra delay up to this (ms)")
    deadline_ms: Annotated[float, Bound(0, 3_600_000, "ms")] = Field(
        0.0, description="live: frames delivered later than this after sending are flagged late; 0 = off")
    csi: bool = Field(True, description="live: the listener gets its fading gain and exact sigma^2 (else the mean N0)")
    queue_size: Annotated[int, Bound(1, 8192, "frames", bytes_each=1536)] = Field(
        4096, description="live: bound of the listener's queue (one queued frame of k = 256 costs about 1.5 KB)")
    snr_offset_db: Annotated[float | None, DB] = Field(
        None, description="live: follow the legitimate link's SNR plus this offset instead of snr_db (dB)")
    phy: PhyName = Field("flat", description="physical layer: flat (the paper's) or ofdm")
    channel_model: Annotated[str, Bound(choices=CHANNEL_MODELS)] = Field(
        "TDL-A", description="ofdm: 3GPP model, TDL-A..E or CDL-A..E")
    delay_spread_ns: Annotated[float, Bound(0, MAX_DELAY_SPREAD_NS, "ns", open_low=True, note="38.901: 10-1000 ns")] = \
        Field(100.0, description="ofdm: RMS delay spread (ns)")
    carrier_ghz: Annotated[float, Bound(0.5, 100.0, "GHz", note="the 38.901 models' range")] = Field(
        3.5, description="ofdm: carrier frequency (GHz)")
    speed_kmh: Annotated[float, Bound(0, MAX_SPEED_KMH, "km/h")] = Field(
        3.0, description="ofdm: UE speed (km/h), sets the Doppler")
    fft_size: Annotated[int, GRID] = Field(12, description="ofdm: subcarriers")
    subcarrier_spacing_khz: Annotated[float, Bound(unit="kHz", choices=SUBCARRIER_SPACINGS_KHZ)] = Field(
        30.0, description="ofdm: subcarrier spacing (kHz), a 3GPP numerology")
    ofdm_symbols: Annotated[int, Bound(2, 4096, note="at least one pilot and one data OFDM symbol")] = Field(
        14, description="ofdm: OFDM symbols per frame (one slot)")
    pilot_symbols: tuple[int, ...] = Field((2, 11), description="ofdm: indices of the pilot OFDM symbols")
    estimator: EstimatorName = Field("ls", description="ofdm: channel estimation, from pilots (ls) or perfect")
    feedback: FeedbackName = Field("re", description="ofdm: CSI feedback per RE, per subband or per frame")
    subband_size: Annotated[int, GRID] = Field(4, description="ofdm: subcarriers per feedback subband")
    feedback_delay: Annotated[int, Bound(0, 64, "frames")] = Field(
        1, description="ofdm: frames between a CSI measurement and the frame it shapes")

    @field_validator("*", mode="before")
    @classmethod
    def _choice(cls, v: Any, info: ValidationInfo) -> Any:
        """Choices first, in the one wording (before a Literal's own, longer message)."""
        bound = bound_of(cls, info.field_name)
        return bound.check(info.field_name, v) if bound.choices else v

    @field_validator("*")
    @classmethod
    def _in_bound(cls, v: Any, info: ValidationInfo) -> Any:
        bound = bound_of(cls, info.field_name)
        return v if bound.choices else bound.check(info.field_name, v)

    @model_validator(mode="after")
    def _pilots(self) -> LinkConfig:
        p = self.pilot_symbols
        if not p or len(set(p)) != len(p) or not all(0 <= i < self.ofdm_symbols for i in p):
            raise ValueError(f"pilot_symbols={list(p)} must be distinct OFDM symbol indices in [0, {self.ofdm_symbols})"
                             " and at least one")
        if len(p) >= self.ofdm_symbols:
            raise ValueError(f"pilot_symbols={list(p)} leave no OFDM symbol of {self.ofdm_symbols} for data")
        return self

    def channel(self) -> dict[str, Any]:
        """The settings that make the channel a listener sees (not the SNR, which may change per batch, not the seed
        and not the live delivery): a link whose channel settings change draws a new channel."""
        return self.model_dump(exclude={"snr_db", "seed", *LIVE_FIELDS})


def _scope(prefix: str) -> tuple[str, ...]:
    return tuple(n for n, f in LinkConfig.model_fields.items() if (f.description or "").startswith(prefix))


# The settings of an ofdm link that the flat PHY ignores (their descriptions start "ofdm:").
OFDM_FIELDS: tuple[str, ...] = _scope("ofdm:")
PHY_FIELDS: tuple[str, ...] = ("phy", *OFDM_FIELDS)  # a link's physical layer
LIVE_FIELDS: tuple[str, ...] = _scope("live:")  # the emulator's delivery of a link's frames


def link_field_parser(name: str) -> tuple[Callable[[str], Any], tuple[Any, ...] | None]:
    """How a command line reads LinkConfig field ``name``: a function from text to its value, and its choices (its
    :class:`Bound`'s; None: the validators decide, and name what they accept). Tuples are comma-separated integers,
    booleans true/false."""
    kind = LinkConfig.model_fields[name].annotation
    if get_origin(kind) is not Literal and type(None) in get_args(kind):  # an optional number: its number type
        kind = next(t for t in get_args(kind) if t is not type(None))
    choices = bound_of(LinkConfig, name).choices or None
    if get_origin(kind) is Literal:
        return str, choices
    if get_origin(kind) is tuple:
        return int_list, None
    if kind is bool:
        return truth, None
    return kind, choices  # type: ignore[return-value]  # int, float or str


def link_help(name: str) -> str:
    """A link setting's meaning with its bound, for a command line's help: e.g. ``SNR, Es/N0 per complex symbol
    (dB); in [-100, 100] dB``."""
    field, bound = LinkConfig.model_fields[name], bound_of(LinkConfig, name)
    text = field.description or name
    if bound.bounded and not bound.choices:
        text += f"; in {bound.interval}" + (f" {bound.unit}" if bound.unit else "")
    return text


def link_schema() -> list[dict[str, Any]]:
    """Every link setting as data, for a form or a client: name, meaning, default, unit, bound (``min``, ``max``,
    ``open_min``) or ``choices``, and ``scope`` (``flat``, ``ofdm``, ``live`` or ``all``), read from
    :class:`LinkConfig` (``GET /api/links/schema`` serves it; the dashboard's form builds its choices from it)."""
    out = []
    for name, field in LinkConfig.model_fields.items():
        bound, meaning = bound_of(LinkConfig, name), field.description or name
        scope = meaning.partition(":")[0].split(",")[0] if ":" in meaning else "all"  # "flat, rician: ..." -> flat
        entry: dict[str, Any] = {"name": name, "meaning": meaning, "default": field.default, "unit": bound.unit,
                                 "scope": scope if scope in ("flat", "ofdm", "live") else "all"}
        if bound.choices:
            entry["choices"] = list(bound.choices)
        elif bound.bounded:
            entry |= {"min": bound.low, "max": bound.high, "open_min": bound.open_low}
        out.append(entry)
    return out


def truth(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off) -> bool."""
    low = text.strip().lower()
    if low not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{text!r} is not true or false")
    return low in ("1", "true", "yes", "on")


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
    """Construct a config, turning pydantic's ValidationError into a one-line ``ConfigError`` (an
    :class:`~diffsem.errors.OutOfRangeError` when every refused value was outside its :class:`Bound`)."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raised = [e.get("ctx", {}).get("error") for e in exc.errors()]
        # a message that names its field ("speed_kmh=-1.0 km/h is out of range ...") stands alone
        msgs = "; ".join(str(err) if isinstance(err, ValueError) and "=" in str(err).split(" ")[0] else
                         f"{'.'.join(str(p) for p in e['loc']) or cls.__name__}: {e['msg']}"
                         for e, err in zip(exc.errors(), raised, strict=True))
        error = OutOfRangeError if all(isinstance(err, BoundError) for err in raised) else ConfigError
        raise error(f"invalid {getattr(cls, 'what', cls.__name__)}: {msgs}") from None
