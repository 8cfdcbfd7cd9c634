"""One emulated link per listener: settings, seeded generators, SNR trace, queue, counters.

The channel maths is the core's (:func:`diffsem.framepath.carry`, :func:`diffsem.channel.draw_fading`,
:func:`diffsem.channel.equalised_noise`, and for an ``ofdm`` link :class:`diffsem.phy.OfdmLink` through
:mod:`channel_emulator.phy`); a link only decides *which* SNR, fading gain and generator a batch uses. The
``LinkSettings`` fields that the core's :class:`~diffsem.config.LinkConfig` has are named alike, so
:func:`link_config` converts by name and the core checks them (with :func:`diffsem.phy.check_link` for the grid).

Each link owns three generators seeded from its seed: ``noise`` (fading with coherence 1, channel
noise and erasures, consumed exactly as the offline evaluator consumes its per-link generator; an ofdm link first
draws its channel process's seed from it, as :func:`diffsem.phy.make_link` does offline), ``fade``
(gains of coherence blocks longer than one frame) and ``aux`` (frame loss and delay jitter), so loss and
delay settings never shift the noise a seed gives.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from channel_emulator import schema
from channel_emulator.phy import OfdmState
from channel_emulator.traces import SnrTrace, from_points, load_named, parse_csv
from diffsem.channel import ChannelOutput, draw_fading, equalised_noise, noise_variance
from diffsem.config import LinkConfig, build
from diffsem.framepath import carry
from diffsem.phy import CsiFeedback, check_link
from diffsem.seeds import derive_seed
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.errors import BadRequest
from services_common.tensors import rows_to_proto

Clock = Callable[[], float]


def trace_of(tr: pb.SnrTrace, trace_dir: Path | None) -> SnrTrace:
    """An SnrTrace message as a trace: its points, its CSV content or a file named in ``trace_dir`` (exactly one)."""
    given = [bool(tr.points), bool(tr.csv), bool(tr.name)]
    if sum(given) != 1:
        raise BadRequest("an SNR trace needs exactly one of points, csv (content) or name (a file in --trace-dir)")
    linear = tr.interp == pb.INTERP_LINEAR
    if tr.points:
        return from_points([(p.t_s, p.snr_db) for p in tr.points], linear, tr.loop)
    trace = parse_csv(tr.csv, "SnrTrace.csv") if tr.csv else load_named(trace_dir, tr.name)
    return replace(trace, linear=trace.linear or linear, loop=trace.loop or tr.loop)


def link_config(p: pb.LinkSettings, snr_db: float, k: int | None = None) -> LinkConfig:
    """The core's settings of a link at ``snr_db`` (every LinkConfig field from the LinkSettings field of that name);
    with ``k``, also the cross-field check that the link carries frames of k real values. Raises ConfigError."""
    values = {name: getattr(p, name) for name in LinkConfig.model_fields}
    values.update(snr_db=snr_db, pilot_symbols=tuple(p.pilot_symbols))
    cfg = build(LinkConfig, **values)
    if k is not None:
        check_link(cfg, k)
    return cfg


def checked(current: pb.LinkSettings, update: pb.LinkSettings, legit: bool,
            trace_dir: Path | None = None, k: int = 256) -> tuple[pb.LinkSettings, SnrTrace | None]:
    """``current`` with ``update`` applied and validated (the schema's bounds, then the core's rules between fields,
    the OFDM grid against frames of ``k`` real values); the new trace, if the update sets one. Raises BadRequest /
    OutOfRange / ConfigError naming the bad field."""
    new = schema.merged(current, update)
    if legit and new.HasField("snr_offset_db"):
        raise BadRequest("the legitimate link cannot follow itself: snr_offset_db is for eavesdropper links")
    link_config(new, new.snr_db, k)
    trace = trace_of(update.trace, trace_dir) if update.HasField("trace") else None
    return new, trace


class Subscriber:
    """A listener's bounded queue of ``(deliver_at, ReceivedFrame)``, filled from any thread (under the
    emulator's lock) and read by one coroutine on ``loop``. A full queue drops and counts. ``principal``: who the
    listener's verified credential names (a reconnect comes from the same principal)."""

    def __init__(self, name: str, size: int, loop: asyncio.AbstractEventLoop, principal: str | None = None):
        self.name, self.size, self.principal = name, size, principal
        self.items: deque[tuple[float, frame_pb2.ReceivedFrame]] = deque()
        self.closed = False
        self.dropped = 0
        self._loop = loop
        self._wake = asyncio.Event()

    def space(self) -> int:
        return max(0, self.size - len(self.items))

    def offer(self, items: list[tuple[float, frame_pb2.ReceivedFrame]], dropped: int) -> None:
        """Queue ``items`` (they fit: see :meth:`space`) and count ``dropped`` frames that did not."""
        self.items.extend(items)
        self.dropped += dropped
        if items:
            self._loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        self.closed = True
        self._loop.call_soon_threadsafe(self._wake.set)

    async def get(self) -> tuple[float, frame_pb2.ReceivedFrame] | None:
        """The next item, or None once closed. Called on ``loop`` only."""
        while not self.items and not self.closed:
            self._wake.clear()
            if self.items or self.closed:  # filled between the check and the clear
                break
            await self._wake.wait()
        return None if self.closed else self.items.popleft()


class Link:
    """State of one link; every method is called under the emulator's lock. ``settings``: every field set
    (:func:`channel_emulator.schema.initial` plus updates); ``now``: the emulator clock's time; ``seeded``: its seed
    was given by the operator (else drawn from the OS)."""

    def __init__(self, name: str, role: int, settings: pb.LinkSettings, now: float, k: int = 256,
                 seeded: bool = False):
        self.name, self.role, self.settings, self.k = name, role, settings, k
        self.ofdm: OfdmState | None = None  # built on the first batch of an ofdm link
        self.trace: SnrTrace | None = None
        self.trace_start = now
        self.subscriber: Subscriber | None = None
        self.detached_at: float | None = now  # clock time its listener left (None while one is attached)
        self.counts = {"frames_in": 0, "delivered": 0, "dropped_queue": 0, "lost": 0, "late": 0, "no_listener": 0}
        self.last_gain = complex(1.0, 0.0)
        self.last_deliver_at = 0.0
        self._block_gain: torch.Tensor | None = None
        self._block_left = 0
        self.reseed(settings.seed, seeded)

    @property
    def legit(self) -> bool:
        return self.role == common_pb2.ROLE_LEGITIMATE

    def reseed(self, seed: int, seeded: bool) -> None:
        self.settings.seed, self.seeded = seed, seeded
        self.noise = torch.Generator().manual_seed(seed)
        self.fade = torch.Generator().manual_seed(derive_seed(seed, "fade"))
        self.aux = torch.Generator().manual_seed(derive_seed(seed, "aux"))
        self._block_left = 0
        self.ofdm = None  # its channel is seeded from ``noise``: a new seed, a new channel

    def update(self, s: pb.LinkSettings, now: float, trace_dir: Path | None = None) -> None:
        new, trace = checked(self.settings, s, self.legit, trace_dir, self.k)
        if new.fading != self.settings.fading or new.coherence_frames != self.settings.coherence_frames:
            self._block_left = 0
        self.settings = new
        if s.HasField("seed"):
            self.reseed(new.seed, True)
        if s.clear_trace:
            self.trace = None
        if trace is not None:
            self.trace, self.trace_start = trace, now

    def snr_db(self, now: float, legit_snr_db: float) -> float:
        """Current SNR: the trace (if any) or ``snr_db``; with an offset, the legitimate SNR plus the offset."""
        if self.settings.HasField("snr_offset_db"):
            return legit_snr_db + self.settings.snr_offset_db
        if self.trace is not None:
            return self.trace.value(now - self.trace_start)
        return self.settings.snr_db

    def config(self, snr_db: float) -> LinkConfig:
        return link_config(self.settings, snr_db)

    def phy(self, cfg: LinkConfig) -> OfdmState | None:
        """The link's ofdm state for its settings ``cfg`` (rebuilt when its channel changed), or None if flat."""
        if cfg.phy != "ofdm":
            self.ofdm = None
            return None
        if self.ofdm is None or not self.ofdm.same_link(cfg):
            self.ofdm = OfdmState(cfg, self.noise, self.k)
        return self.ofdm

    def feedback(self, n: int, snr_db: float) -> CsiFeedback | None:
        """The transmitter's CSI of the link's next ``n`` frames (ofdm; drawn now), or None on a flat link."""
        ofdm = self.phy(self.config(snr_db))
        return None if ofdm is None else ofdm.feedback(n, snr_db)

    def _gains(self, b: int, cfg: LinkConfig) -> torch.Tensor:
        """Fading gains (B,) complex64: per frame (coherence 1, from ``noise`` as the evaluator draws them)
        or held over blocks of ``coherence_frames`` frames (from ``fade``)."""
        if self.settings.coherence_frames <= 1 or cfg.fading == "none":
            return draw_fading(b, cfg, self.noise)
        out = torch.empty(b, dtype=torch.complex64)
        for i in range(b):
            if self._block_left <= 0 or self._block_gain is None:
                self._block_gain = draw_fading(1, cfg, self.fade)
                self._block_left = self.settings.coherence_frames
            out[i] = self._block_gain[0]
            self._block_left -= 1
        return out

    def transmit(self, x: torch.Tensor, snr_db: float) -> tuple[ChannelOutput, torch.Tensor, torch.Tensor]:
        """Pass x (B, k) through the link: (channel output, lost (B,) bool, extra delay (B,) seconds)."""
        cfg = self.config(snr_db)  # validated once per batch
        ofdm = self.phy(cfg)
        if ofdm is not None:
            if x.shape[1] != self.k:
                raise BadRequest(f"frames of {x.shape[1]} real values; the ofdm link {self.name!r} carries k={self.k}")
            out = ofdm.carry(x, snr_db)
        else:
            out = carry(x, cfg, self.noise, gain=self._gains(x.shape[0], cfg))
        self.last_gain = complex(out.gain[-1].item())
        p = self.settings
        lost = torch.zeros(x.shape[0], dtype=torch.bool)
        if p.loss_prob > 0:
            lost = torch.rand(x.shape[0], generator=self.aux) < p.loss_prob
        delay = torch.full((x.shape[0],), p.delay_ms / 1000.0, dtype=torch.float64)
        if p.jitter_ms > 0:
            delay += torch.rand(x.shape[0], generator=self.aux, dtype=torch.float64) * p.jitter_ms / 1000.0
        return out, lost, delay

    def csi(self, snr_db: float) -> tuple[float, float]:
        """(N0, sigma_c^2 = N0/|h|^2 for the current gain) per real latent dimension; on an ofdm link the mean
        N0/|H|^2 over the last frame's carried REs (N0 before its first frame)."""
        n0 = float(noise_variance(snr_db))
        if self.settings.phy == "ofdm":
            last = self.ofdm.last_csi if self.ofdm is not None else math.nan
            return n0, n0 if math.isnan(last) else last
        gain = self._block_gain if (self.settings.coherence_frames > 1 and self._block_gain is not None) else None
        h = gain if gain is not None else torch.tensor([self.last_gain], dtype=torch.complex64)
        if self.settings.fading == "none":
            h = torch.ones(1, dtype=torch.complex64)
        return n0, float(equalised_noise(snr_db, h)[0])

    def received(self, frames: list[frame_pb2.Frame], x: torch.Tensor, snr_db: float, now: float,
                 space: int) -> list[tuple[float, frame_pb2.ReceivedFrame]]:
        """Pass a batch x (B, k) through the link and build the first ``space`` received frames with their delivery
        times. The whole batch goes through the channel even when not all of it fits, so the link's generators
        advance the same whether its listener keeps up or not; the frames that do not fit are counted as dropped
        and cost no message."""
        out, lost, delay = self.transmit(x, snr_db)
        csi = self.settings.csi
        avg = float(noise_variance(snr_db))  # N0 without CSI: the listener knows only the average SNR
        n = min(space, len(frames))
        rows = rows_to_proto(out.latent[:n])
        per_re = out.sigma_c2.dim() == 2  # ofdm: the LMMSE noise per RE, one value per complex symbol
        erased = out.erased[:n].sum(dim=1).tolist()
        sigma2 = out.sigma_c2[:n, 0::2].tolist() if per_re else out.sigma_c2[:n].tolist()
        gains = out.gain[:n].tolist()
        items = []
        for i in range(n):
            f = frames[i]
            rf = frame_pb2.ReceivedFrame(link=self.name, role=self.role, snr_db=snr_db, has_csi=csi)
            rf.frame.message_id, rf.frame.seq = f.message_id, f.seq
            rf.frame.header.CopyFrom(f.header)
            if bool(lost[i]):
                rf.dropped = True
                self.counts["lost"] += 1
            else:
                rf.frame.symbols.CopyFrom(rows[i])
                if csi and per_re:
                    rf.sigma2_re.extend(sigma2[i])
                    rf.sigma2 = sum(sigma2[i]) / len(sigma2[i])
                else:
                    rf.sigma2 = sigma2[i] if csi else avg
                rf.erased = int(erased[i])
                if csi:
                    rf.gain_re, rf.gain_im = gains[i].real, gains[i].imag
            at = max(now + float(delay[i]), self.last_deliver_at)
            self.last_deliver_at = at
            items.append((at, rf))
        self.counts["dropped_queue"] += len(frames) - n
        return items
