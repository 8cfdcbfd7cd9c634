"""The channel emulator service: one broadcast, a separately impaired link per listener.

``Send`` passes each batch of frames through every link that has a listener (the core's
:func:`diffsem.channel.apply_link`, one call per link per batch) and queues the result for that listener.
``Listen`` subscribes a listener: the legitimate receiver on the one legitimate link, eavesdroppers on
links named after them (created on first use). Queues are bounded; a frame that does not fit is counted
in ``dropped_queue`` for that link only, so a slow listener never blocks the others. A new ``Listen`` with
the name of a connected listener replaces it (a restarted receiver reattaches). ``GetState`` reports each
link's current noise (the CSI the transmitter feeds back); ``Configure`` changes links at run time.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import torch

from channel_emulator.links import FADING_NAMES, Link, LinkParams, Subscriber
from diffsem.channel import noise_variance
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.errors import BadRequest, grpc_errors
from services_common.frames import stable_seed, symbols_of
from services_common.tensors import to_proto

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_FRAMES_PER_SEND = 100_000
MAX_POWER = 2.0


class Emulator:
    """Links, listeners and counters; thread-safe (one lock around every state change)."""

    def __init__(self, legit_name: str = "receiver", legit: LinkParams | None = None,
                 eve_defaults: LinkParams | None = None, seed: int = 0):
        self.lock = threading.RLock()
        self.seed = seed
        self.legit_name = legit_name
        self.eve_defaults = eve_defaults or LinkParams(seed=0)
        self.frames = 0
        legit = legit or LinkParams(seed=0)
        first = Link(legit_name, common_pb2.ROLE_LEGITIMATE, replace(legit, seed=stable_seed(seed, legit_name)),
                     time.time())
        self.links: dict[str, Link] = {legit_name: first}

    # ---- links -----------------------------------------------------------------------------------------
    def _check_new(self, name: str, role: int) -> None:
        if not NAME_RE.match(name):
            raise BadRequest(f"link name {name!r}: use 1-64 letters, digits, '_', '.', '-' (starting alnum)")
        if role != common_pb2.ROLE_EAVESDROPPER:
            raise BadRequest(f"only the link {self.legit_name!r} is legitimate; new links are eavesdropper links")

    def _new_link(self, name: str, role: int) -> Link:
        self._check_new(name, role)
        link = Link(name, role, replace(self.eve_defaults, seed=stable_seed(self.seed, name)), time.time())
        self.links[name] = link
        return link

    def _legit_snr(self, now: float) -> float:
        return self.links[self.legit_name].snr_db(now, 0.0)

    def subscribe(self, role: int, name: str, defaults: pb.LinkSettings | None) -> tuple[Link, Subscriber]:
        """Attach a listener (replacing one of the same name); create an eavesdropper link on first use."""
        if role not in (common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER):
            raise BadRequest("Listen needs role ROLE_LEGITIMATE or ROLE_EAVESDROPPER")
        if role == common_pb2.ROLE_LEGITIMATE:
            name = name or self.legit_name
            if name != self.legit_name:
                raise BadRequest(f"the legitimate link is {self.legit_name!r}, not {name!r}")
        elif not name or name == self.legit_name:
            raise BadRequest(f"an eavesdropper needs its own link name (not empty, not {self.legit_name!r})")
        with self.lock:
            link = self.links.get(name)
            if link is None:
                link = self._new_link(name, role)
                if defaults is not None:
                    link.update(defaults, time.time())
            elif link.role != role:
                raise BadRequest(f"link {name!r} is a {common_pb2.Role.Name(link.role)} link")
            if link.subscriber is not None:
                log.info("listener %s replaced by a new subscription", name)
                link.subscriber.close()
            link.subscriber = Subscriber(name, link.params.queue_size)
            log.info("listener %s attached (%s)", name, common_pb2.Role.Name(role))
            return link, link.subscriber

    def unsubscribe(self, name: str, sub: Subscriber) -> None:
        sub.close()
        with self.lock:
            link = self.links.get(name)
            if link is not None and link.subscriber is sub:
                link.subscriber = None
                log.info("listener %s detached", name)

    def configure(self, updates: list[pb.LinkUpdate]) -> None:
        """Validate every update first, then apply them all (all or nothing)."""
        now = time.time()
        with self.lock:
            for u in updates:  # dry run on copies: nothing changes unless every update is valid
                if u.remove:
                    if u.name == self.legit_name:
                        raise BadRequest("the legitimate link cannot be removed")
                    continue
                link = self.links.get(u.name)
                if link is None:
                    self._check_new(u.name, u.role or common_pb2.ROLE_EAVESDROPPER)
                    probe = Link(u.name, common_pb2.ROLE_EAVESDROPPER, self.eve_defaults, now)
                else:
                    probe = Link(u.name, link.role, link.params, now)
                probe.update(u.settings, now)
            for u in updates:
                if u.remove:
                    link = self.links.pop(u.name, None)
                    if link is not None and link.subscriber is not None:
                        link.subscriber.close()
                    continue
                link = self.links.get(u.name) or self._new_link(u.name, u.role or common_pb2.ROLE_EAVESDROPPER)
                link.update(u.settings, now)
                if link.subscriber is not None and link.subscriber.queue.maxsize != link.params.queue_size:
                    link.subscriber.queue.maxsize = link.params.queue_size

    # ---- traffic ---------------------------------------------------------------------------------------
    def send(self, frames: list[frame_pb2.Frame]) -> tuple[int, int]:
        """Broadcast a batch; returns (frames accepted, listeners it was queued for)."""
        if not frames:
            return 0, 0
        if len(frames) > MAX_FRAMES_PER_SEND:
            raise BadRequest(f"{len(frames)} frames in one Send; at most {MAX_FRAMES_PER_SEND}")
        rows = [symbols_of(f, None, "frame") for f in frames]  # checks dtype float32, 1-D, finite
        lengths = sorted({len(r) for r in rows})
        if len(lengths) != 1 or lengths[0] % 2 or lengths[0] == 0:
            raise BadRequest(f"frames in one Send must share one even, non-zero length k; got lengths {lengths[:5]}")
        x = torch.stack(rows)
        if float(x.pow(2).mean(dim=1).max()) > MAX_POWER:
            raise BadRequest(f"frame power above {MAX_POWER} per real dimension; frames must have power <= 1 "
                             "(a + sigma_self^2)")
        listeners = 0
        with self.lock:
            now = time.time()
            legit_snr = self._legit_snr(now)
            self.frames += len(frames)
            for link in self.links.values():
                link.counts["frames_in"] += len(frames)
                sub = link.subscriber
                if sub is None or sub.closed.is_set():
                    link.counts["no_listener"] += len(frames)
                    continue
                listeners += 1
                self._deliver(link, sub, frames, x, link.snr_db(now, legit_snr), now)
        return len(frames), listeners

    def _deliver(self, link: Link, sub: Subscriber, frames: list[frame_pb2.Frame], x: torch.Tensor,
                 snr_db: float, now: float) -> None:
        out, lost, delay = link.transmit(x, snr_db)
        n0 = out.sigma_c2  # per frame, with CSI
        avg = float(noise_variance(snr_db))  # N0 without CSI: the listener knows only the average SNR
        erased = out.erased.sum(dim=1)
        for i, f in enumerate(frames):
            rf = frame_pb2.ReceivedFrame(link=link.name, role=link.role, snr_db=snr_db, has_csi=link.params.csi)
            rf.frame.message_id, rf.frame.seq = f.message_id, f.seq
            rf.frame.header.CopyFrom(f.header)
            if bool(lost[i]):
                rf.dropped = True
                link.counts["lost"] += 1
            else:
                rf.frame.symbols.CopyFrom(to_proto(out.latent[i]))
                rf.sigma2 = float(n0[i]) if link.params.csi else avg
                rf.erased = int(erased[i])
                if link.params.csi:
                    rf.gain_re, rf.gain_im = float(out.gain[i].real), float(out.gain[i].imag)
            at = max(now + float(delay[i]), link.last_deliver_at)
            link.last_deliver_at = at
            if not sub.offer((at, rf)):
                link.counts["dropped_queue"] += 1

    # ---- state -----------------------------------------------------------------------------------------
    def link_state(self, link: Link, now: float, legit_snr: float) -> pb.LinkState:
        snr = link.snr_db(now, legit_snr)
        n0, sigma_c2 = link.csi(snr)
        p = link.params
        sub = link.subscriber
        return pb.LinkState(
            name=link.name, role=link.role, attached=sub is not None and not sub.closed.is_set(), snr_db=snr, n0=n0,
            sigma_c2=sigma_c2, gain_re=link.last_gain.real, gain_im=link.last_gain.imag, fading=p.fading,
            rician_k=p.rician_k, coherence_frames=p.coherence_frames, loss_prob=p.loss_prob,
            erasure_prob=p.erasure_prob, delay_ms=p.delay_ms, jitter_ms=p.jitter_ms, deadline_ms=p.deadline_ms,
            has_offset=p.snr_offset_db is not None, snr_offset_db=p.snr_offset_db or 0.0,
            has_trace=link.trace is not None, queue_size=p.queue_size, queue_depth=sub.queue.qsize() if sub else 0,
            seed=p.seed, csi=p.csi, **link.counts)

    def state(self, name: str = "") -> pb.ChannelState:
        with self.lock:
            now = time.time()
            legit_snr = self._legit_snr(now)
            if name and name not in self.links:
                raise BadRequest(f"no link named {name!r}; links: {', '.join(self.links)}")
            links = [self.links[name]] if name else list(self.links.values())
            return pb.ChannelState(links=[self.link_state(lk, now, legit_snr) for lk in links], frames=self.frames,
                                   time=now)


class ChannelEmulatorServicer(pb_grpc.ChannelEmulatorServicer):
    """gRPC wiring of :class:`Emulator`."""

    def __init__(self, emulator: Emulator):
        self.emu = emulator

    @grpc_errors
    def Send(self, request: pb.SendRequest, context: grpc.ServicerContext) -> pb.SendReply:
        accepted, listeners = self.emu.send(list(request.frames))
        return pb.SendReply(accepted=accepted, listeners=listeners)

    @grpc_errors
    def Listen(self, request: pb.ListenRequest, context: grpc.ServicerContext) -> Iterator[frame_pb2.ReceivedFrame]:
        defaults = request.defaults if request.HasField("defaults") else None
        link, sub = self.emu.subscribe(request.role, request.name, defaults)
        context.add_callback(lambda: self.emu.unsubscribe(link.name, sub))
        try:
            while context.is_active() and not sub.closed.is_set():
                try:
                    item = sub.queue.get(timeout=0.25)
                except queue.Empty:
                    continue
                if item is None:
                    break
                at, rf = item
                if at > time.time():
                    sub.closed.wait(at - time.time())
                now = time.time()
                rf.deliver_time = now
                rf.queue_drops = sub.dropped
                deadline = link.params.deadline_ms
                with self.emu.lock:
                    if deadline > 0 and (now - rf.frame.header.send_time) * 1000.0 > deadline:
                        rf.late = True
                        link.counts["late"] += 1
                    link.counts["delivered"] += 1
                yield rf
        finally:
            self.emu.unsubscribe(link.name, sub)

    @grpc_errors
    def Configure(self, request: pb.ConfigureRequest, context: grpc.ServicerContext) -> pb.ChannelState:
        self.emu.configure(list(request.links))
        return self.emu.state()

    @grpc_errors
    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.ChannelState:
        return self.emu.state(request.link)


__all__ = ["ChannelEmulatorServicer", "Emulator", "FADING_NAMES"]
