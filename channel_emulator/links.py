"""One emulated link per listener: the core's link, and around it the listener's queue, the SNR trace and the
counters.

The channel is the core's :class:`diffsem.phy.Link`: its settings, its generators, and ``feedback`` then ``carry``
on every PHY (docs/design.md §3, the link). An :class:`EmulatedLink` only decides which SNR a batch is drawn at (an
SNR trace, or the legitimate link's SNR plus an offset), turns what the link delivers into ``ReceivedFrame``
messages and queues them for its listener, and counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from channel_emulator import antennas, schema
from channel_emulator.traces import SnrTrace, from_points, load_named, parse_csv
from diffsem.channel import ChannelOutput, equalised_noise, noise_variance
from diffsem.config import LinkConfig
from diffsem.phy import Link, LinkCsi
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.errors import BadRequest
from services_common.tensors import rows_to_proto

Clock = Callable[[], float]
STRIP_FRAMES = 32  # recent frames kept for an ofdm link's per-subcarrier SNR picture
log = logging.getLogger(__name__)
_warmed: set[str] = set()


def warm_up(phy: str) -> None:
    """Import Sionna and pass two frames over a throwaway ``phy`` link, on a background thread, once per process and
    PHY. A process's first batch otherwise pays Sionna's import and its blocks' first calls (about 3 s for flat, 4 s
    for ofdm) inside a ``Send`` or ``Feedback``, with the event loop starved meanwhile. The emulator starts the flat
    warm-up when it starts and the ofdm one when an ofdm link is configured."""
    if phy in _warmed:
        return
    _warmed.add(phy)

    def run() -> None:
        Link(LinkConfig(phy=phy, seed=0), 256).carry(torch.zeros(2, 256))
        log.info("%s PHY warmed up", phy)

    threading.Thread(target=run, name=f"{phy}-warm-up", daemon=True).start()


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


def checked(current: pb.LinkSettings, update: pb.LinkSettings, legit: bool,
            trace_dir: Path | None = None, k: int = 256) -> tuple[pb.LinkSettings, LinkConfig, SnrTrace | None]:
    """``current`` with ``update`` applied, validated by building the core's settings (with the OFDM grid against
    frames of ``k`` real values), those settings, and the new trace if the update sets one. Raises BadRequest or
    ConfigError (OutOfRangeError) naming the bad field."""
    new = schema.merged(current, update)
    if legit and new.HasField("snr_offset_db"):
        raise BadRequest("the legitimate link cannot follow itself: snr_offset_db is for eavesdropper links")
    antennas.check_update(update.antennas, legit, new.phy)
    cfg = schema.config(new, k)
    antennas.configs(new.antennas)
    trace = trace_of(update.trace, trace_dir) if update.HasField("trace") else None
    return new, cfg, trace


@dataclass
class Carried:
    """What a link's listener and its state need of a batch carried over the link: ``out``, the channel's output
    for the first n frames of the batch (those that fit the listener's queue; every row field cut to n), and from the
    whole batch the last frame's gain, an ofdm link's last fed-back level (NaN on flat) and the heat-strip rows.
    Small enough to pass between processes whatever the batch, when the listener reads nothing (n = 0)."""

    out: ChannelOutput
    last_gain: complex
    last_csi: float
    strip: list[list[float]]
    last_sigma2: float | None = None  # a multi-antenna link's last frame's combined noise per real dim


def carry(link: Link, ant: antennas.AntennaLink, x: torch.Tensor | antennas.Batch, snr_db: float,
          own: pb.AntennaSettings, legit: bool) -> ChannelOutput:
    """A batch x (B, k) over the core ``link``, or a multi-antenna batch over the link's antennas ``ant`` (with its
    ``own`` antenna settings), combined as its listener does (:meth:`antennas.AntennaLink.carry`) with the core
    link's delivery (loss, delay). The emulator calls it for the legitimate link, the fan-out's drawer for
    eavesdropper links."""
    if not isinstance(x, antennas.Batch):
        return link.carry(x, snr_db)
    out = ant.carry(x, snr_db, own, legit, link.cfg)
    out.lost, out.delay_s = link.delivery(out.latent.shape[0])
    return out


def carried(out: ChannelOutput, n: int, mimo: bool = False) -> Carried:
    """Cut a whole batch's channel output down to what its listener gets (:class:`Carried`): its first n frames;
    ``mimo``: a multi-antenna link's, whose state reports its last frame's combined noise."""
    cut = {f.name: None if (v := getattr(out, f.name)) is None else v[:n] for f in fields(out)}
    strip = [] if out.subcarrier_snr_db is None else \
        out.subcarrier_snr_db[-STRIP_FRAMES:].clamp(-100.0, 100.0).tolist()  # finite for JSON
    return Carried(ChannelOutput(**cut), complex(out.gain[-1].item()),
                   math.nan if out.csi is None else float(out.csi[-1].mean()), strip,
                   float(out.sigma_c2[-1].mean()) if mimo else None)


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


class EmulatedLink:
    """One listener's link in the emulator: the core :class:`~diffsem.phy.Link`, its wire settings (every field
    set), SNR trace, queue and counters. Every method is called under the emulator's lock; ``now``: the emulator
    clock's time; ``seeded``: its seed was given by the operator (else drawn from the OS, never exposed)."""

    def __init__(self, name: str, role: int, settings: pb.LinkSettings, now: float, k: int = 256,
                 seeded: bool = False):
        self.name, self.role, self.settings, self.k = name, role, settings, k
        self.link = Link(schema.config(settings, k), k)
        self.trace: SnrTrace | None = None
        self.trace_start = now
        self.subscriber: Subscriber | None = None
        self.detached_at: float | None = now  # clock time its listener left (None while one is attached)
        self.counts = {"frames_in": 0, "delivered": 0, "dropped_queue": 0, "lost": 0, "late": 0, "no_listener": 0}
        self.last_gain = complex(1.0, 0.0)
        self.last_csi = math.nan  # an ofdm link's mean fed-back level N0 (1 + e) / |H|^2 over its last frame's REs
        self.strip: deque[list[float]] = deque(maxlen=STRIP_FRAMES)
        self.last_deliver_at = 0.0
        self.seeded = seeded
        self.antennas = antennas.AntennaLink(settings.seed)  # its multi-antenna channel, from the same seed
        self.last_sigma2: float | None = None  # a multi-antenna link's last combined frame's noise per real dim
        self.updates: list[tuple[LinkConfig, bool]] = []  # (settings, restart) not yet passed to the fan-out

    @property
    def legit(self) -> bool:
        return self.role == common_pb2.ROLE_LEGITIMATE

    def update(self, s: pb.LinkSettings, now: float, trace_dir: Path | None = None) -> None:
        new, cfg, trace = checked(self.settings, s, self.legit, trace_dir, self.k)
        self.settings = new
        self.link.update(cfg, restart=s.HasField("seed"))
        if s.HasField("seed"):
            self.seeded = True  # the operator's seed: its noise is known to whoever knows it
            drawn, self.antennas = self.antennas.drawn, antennas.AntennaLink(s.seed)
            self.antennas.drawn = drawn  # frames already fed back keep the channel they were drawn with
        if not self.legit:  # an eavesdropper link draws in the fan-out, which replays its updates in order
            self.updates.append((cfg, s.HasField("seed")))
        if cfg.phy != "ofdm":
            self.strip.clear()
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

    def feedback(self, n: int, snr_db: float) -> LinkCsi:
        """The transmitter's CSI of the link's next ``n`` frames, drawn now (:meth:`diffsem.phy.Link.feedback`)."""
        return self.link.feedback(n, snr_db)

    def csi(self, snr_db: float) -> tuple[float, float]:
        """(N0, sigma_c^2) per real latent dimension now: N0/|h|^2 of the last frame's gain (flat), or the mean
        fed-back level over the last frame's REs (ofdm; N0 before its first frame)."""
        n0 = float(noise_variance(snr_db))
        if self.last_sigma2 is not None:  # a multi-antenna link: its LMMSE combiner's noise
            return n0, self.last_sigma2
        if self.link.cfg.phy == "ofdm":
            return n0, n0 if math.isnan(self.last_csi) else self.last_csi
        return n0, float(equalised_noise(n0, torch.tensor([self.last_gain], dtype=torch.complex64))[0])

    def received(self, frames: list[frame_pb2.Frame], x: torch.Tensor | antennas.Batch, snr_db: float, now: float,
                 space: int) -> list[tuple[float, frame_pb2.ReceivedFrame]]:
        """Carry a batch x (B, k) (or antenna signals) over the link and build the first ``space`` received frames
        with their delivery times. The whole batch goes through the channel even when not all of it fits, so the
        link's generators advance the same whether its listener keeps up or not; the frames that do not fit are
        counted as dropped and cost no message."""
        out = carry(self.link, self.antennas, x, snr_db, self.settings.antennas, self.legit)
        return self.items(frames, carried(out, min(space, len(frames)), isinstance(x, antennas.Batch)), snr_db, now)

    def items(self, frames: list[frame_pb2.Frame], got: Carried, snr_db: float,
              now: float) -> list[tuple[float, frame_pb2.ReceivedFrame]]:
        """The received frames of a batch carried over this link (here or by the fan-out worker, which carries
        eavesdropper links: channel_emulator/fanout.py): ``got.out``'s rows, the first frames of the batch; the
        rest of the batch is counted as dropped."""
        out = got.out
        self.last_sigma2 = got.last_sigma2
        assert out.lost is not None and out.delay_s is not None
        self.last_gain = got.last_gain
        if not math.isnan(got.last_csi):
            self.last_csi = got.last_csi
        self.strip.extend(got.strip)
        csi = self.settings.csi
        avg = float(noise_variance(snr_db))  # N0 without CSI: the listener knows only the average SNR
        n = out.latent.shape[0]
        rows = rows_to_proto(out.latent)
        per_re = out.sigma_c2.dim() == 2  # ofdm: the LMMSE noise per RE, one value per complex symbol
        erased = out.erased.sum(dim=1).tolist()
        sigma2 = out.sigma_c2[:, 0::2].tolist() if per_re else out.sigma_c2.tolist()
        gains = out.gain.tolist()
        lost = out.lost.tolist()
        items = []
        for i in range(n):
            f = frames[i]
            rf = frame_pb2.ReceivedFrame(link=self.name, role=self.role, snr_db=snr_db, has_csi=csi)
            rf.frame.message_id, rf.frame.seq = f.message_id, f.seq
            rf.frame.header.CopyFrom(f.header)
            if lost[i]:
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
            at = max(now + float(out.delay_s[i]), self.last_deliver_at)
            self.last_deliver_at = at
            items.append((at, rf))
        self.counts["dropped_queue"] += len(frames) - n
        return items

    def snr_picture(self) -> list[float]:
        """An ofdm link's recent frames' SNR per subcarrier in dB, row-major (frames x fft_size), oldest first."""
        return [v for row in self.strip for v in row]
