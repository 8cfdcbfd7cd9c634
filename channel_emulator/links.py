"""One emulated link per listener: settings, seeded generators, SNR trace, queue, counters.

The channel maths is the core's (:func:`diffsem.channel.apply_link`, :func:`diffsem.channel.draw_fading`,
:func:`diffsem.channel.equalised_noise`); a link only decides *which* SNR, fading gain and generator a batch
uses. Each link owns three generators seeded from its seed: ``noise`` (fading with coherence 1, channel
noise and erasures, consumed exactly as the offline evaluator consumes its per-link generator), ``fade``
(gains of coherence blocks longer than one frame) and ``aux`` (frame loss and delay jitter), so loss and
delay settings never shift the noise a seed gives.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, replace

import torch

from channel_emulator.traces import SnrTrace, from_points
from diffsem.channel import ChannelOutput, apply_link, draw_fading, equalised_noise, noise_variance
from diffsem.config import LinkConfig, build
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2
from services_common.errors import BadRequest, OutOfRange
from services_common.frames import stable_seed

FADING_NAMES = ("none", "rayleigh", "rician")
MAX_QUEUE = 1 << 20


@dataclass(frozen=True)
class LinkParams:
    """A link's settings. SNR in dB (Es/N0 per complex symbol); times in ms; probabilities in [0, 1]."""

    seed: int
    snr_db: float = 20.0
    fading: str = "none"
    rician_k: float = 4.0
    coherence_frames: int = 1
    loss_prob: float = 0.0
    erasure_prob: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    deadline_ms: float = 0.0
    snr_offset_db: float | None = None
    csi: bool = True
    queue_size: int = 4096


def _finite(name: str, v: float) -> float:
    if not math.isfinite(v):
        raise BadRequest(f"{name}={v} must be a finite number")
    return v


def _range(name: str, v: float, lo: float, hi: float, unit: str = "") -> float:
    _finite(name, v)
    if not lo <= v <= hi:
        raise OutOfRange(f"{name}={v}{unit} is out of range [{lo}, {hi}]{unit}")
    return v


def merge_settings(p: LinkParams, s: pb.LinkSettings, legit: bool) -> tuple[LinkParams, bool, SnrTrace | None, bool]:
    """Apply the set fields of ``s`` to ``p`` with validation.

    Returns ``(params, reseed, trace, clear_trace)``; raises BadRequest / OutOfRange naming the bad field.
    """
    changes: dict[str, object] = {}
    if s.HasField("snr_db"):
        changes["snr_db"] = _range("snr_db", s.snr_db, -100.0, 100.0, " dB")
    if s.HasField("fading"):
        if s.fading not in FADING_NAMES:
            raise BadRequest(f"fading={s.fading!r} is not one of {', '.join(FADING_NAMES)}")
        changes["fading"] = s.fading
    if s.HasField("rician_k"):
        changes["rician_k"] = _range("rician_k", s.rician_k, 0.0, 1e6)
    if s.HasField("coherence_frames"):
        if s.coherence_frames < 1:
            raise OutOfRange("coherence_frames must be >= 1 (1 = a new fading gain every frame)")
        changes["coherence_frames"] = s.coherence_frames
    for name, hi in (("loss_prob", 1.0), ("erasure_prob", 1.0), ("delay_ms", 60_000.0), ("jitter_ms", 60_000.0),
                     ("deadline_ms", 3_600_000.0)):
        if s.HasField(name):
            changes[name] = _range(name, getattr(s, name), 0.0, hi)
    if s.HasField("snr_offset_db"):
        if legit:
            raise BadRequest("the legitimate link cannot follow itself: snr_offset_db is for eavesdropper links")
        changes["snr_offset_db"] = _range("snr_offset_db", s.snr_offset_db, -100.0, 100.0, " dB")
    if s.clear_offset:
        changes["snr_offset_db"] = None
    if s.HasField("csi"):
        changes["csi"] = s.csi
    if s.HasField("queue_size"):
        if not 1 <= s.queue_size <= MAX_QUEUE:
            raise OutOfRange(f"queue_size={s.queue_size} must be in [1, {MAX_QUEUE}]")
        changes["queue_size"] = s.queue_size
    reseed = s.HasField("seed")
    if reseed:
        changes["seed"] = int(s.seed)
    new = replace(p, **changes)
    build(LinkConfig, snr_db=new.snr_db, fading=new.fading, rician_k=new.rician_k, erasure_prob=new.erasure_prob)
    trace = None
    if s.HasField("trace"):
        tr = s.trace
        if tr.name or tr.csv:
            raise BadRequest("SnrTrace.name and SnrTrace.csv are not supported yet; send points")
        trace = from_points([(p.t_s, p.snr_db) for p in tr.points],
                            tr.interp == pb.INTERP_LINEAR, tr.loop)
    return new, reseed, trace, s.clear_trace


class Subscriber:
    """A listener's bounded queue of ``(deliver_at, ReceivedFrame)``; a full queue drops and counts."""

    def __init__(self, name: str, size: int):
        self.name = name
        self.queue: queue.Queue = queue.Queue(maxsize=size)
        self.closed = threading.Event()
        self.dropped = 0

    def offer(self, item: object) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self) -> None:
        self.closed.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # the reader checks ``closed`` at least every 0.25 s


class Link:
    """State of one link; every method is called under the emulator's lock."""

    def __init__(self, name: str, role: int, params: LinkParams, now: float):
        self.name, self.role, self.params = name, role, params
        self.trace: SnrTrace | None = None
        self.trace_start = now
        self.subscriber: Subscriber | None = None
        self.counts = {"frames_in": 0, "delivered": 0, "dropped_queue": 0, "lost": 0, "late": 0, "no_listener": 0}
        self.last_gain = complex(1.0, 0.0)
        self.last_deliver_at = 0.0
        self._block_gain: torch.Tensor | None = None
        self._block_left = 0
        self.reseed(params.seed)

    @property
    def legit(self) -> bool:
        return self.role == common_pb2.ROLE_LEGITIMATE

    def reseed(self, seed: int) -> None:
        self.params = replace(self.params, seed=seed)
        self.noise = torch.Generator().manual_seed(seed)
        self.fade = torch.Generator().manual_seed(stable_seed(seed, "fade"))
        self.aux = torch.Generator().manual_seed(stable_seed(seed, "aux"))
        self._block_left = 0

    def update(self, s: pb.LinkSettings, now: float) -> None:
        params, reseed, trace, clear = merge_settings(self.params, s, self.legit)
        if params.fading != self.params.fading or params.coherence_frames != self.params.coherence_frames:
            self._block_left = 0
        self.params = params
        if reseed:
            self.reseed(params.seed)
        if clear:
            self.trace = None
        if trace is not None:
            self.trace, self.trace_start = trace, now

    def snr_db(self, now: float, legit_snr_db: float) -> float:
        """Current SNR: the trace (if any) or ``snr_db``; with an offset, the legitimate SNR plus the offset."""
        if self.params.snr_offset_db is not None:
            return legit_snr_db + self.params.snr_offset_db
        if self.trace is not None:
            return self.trace.value(now - self.trace_start)
        return self.params.snr_db

    def config(self, snr_db: float) -> LinkConfig:
        p = self.params
        return build(LinkConfig, snr_db=snr_db, fading=p.fading, rician_k=p.rician_k, erasure_prob=p.erasure_prob)

    def _gains(self, b: int, cfg: LinkConfig) -> torch.Tensor:
        """Fading gains (B,) complex64: per frame (coherence 1, from ``noise`` as the evaluator draws them)
        or held over blocks of ``coherence_frames`` frames (from ``fade``)."""
        if self.params.coherence_frames <= 1 or cfg.fading == "none":
            return draw_fading(b, cfg, self.noise)
        out = torch.empty(b, dtype=torch.complex64)
        for i in range(b):
            if self._block_left <= 0 or self._block_gain is None:
                self._block_gain = draw_fading(1, cfg, self.fade)
                self._block_left = self.params.coherence_frames
            out[i] = self._block_gain[0]
            self._block_left -= 1
        return out

    def transmit(self, x: torch.Tensor, snr_db: float) -> tuple[ChannelOutput, torch.Tensor, torch.Tensor]:
        """Pass x (B, k) through the link: (channel output, lost (B,) bool, extra delay (B,) seconds)."""
        cfg = self.config(snr_db)
        gain = self._gains(x.shape[0], cfg)
        out = apply_link(x, cfg, self.noise, gain=gain)
        self.last_gain = complex(out.gain[-1].item())
        p = self.params
        lost = torch.zeros(x.shape[0], dtype=torch.bool)
        if p.loss_prob > 0:
            lost = torch.rand(x.shape[0], generator=self.aux) < p.loss_prob
        delay = torch.full((x.shape[0],), p.delay_ms / 1000.0, dtype=torch.float64)
        if p.jitter_ms > 0:
            delay += torch.rand(x.shape[0], generator=self.aux, dtype=torch.float64) * p.jitter_ms / 1000.0
        return out, lost, delay

    def csi(self, snr_db: float) -> tuple[float, float]:
        """(N0, sigma_c^2 = N0/|h|^2 for the current gain) per real latent dimension."""
        n0 = float(noise_variance(snr_db))
        gain = self._block_gain if (self.params.coherence_frames > 1 and self._block_gain is not None) else None
        h = gain if gain is not None else torch.tensor([self.last_gain], dtype=torch.complex64)
        if self.params.fading == "none":
            h = torch.ones(1, dtype=torch.complex64)
        return n0, float(equalised_noise(snr_db, h)[0])
