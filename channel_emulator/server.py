"""The channel emulator service: one broadcast, a separately impaired link per listener.

``Send`` carries each batch of frames over every link that has a listener (the core's :class:`diffsem.phy.Link`,
one ``carry`` per link per batch) and queues the result for that listener. ``Feedback`` is the legitimate link's
``feedback``: it draws the channel of the transmitter's next frames, on every PHY, and the next ``Send`` carries the
frames over exactly that channel.
``Listen`` subscribes a listener: the legitimate receiver on the one legitimate link, eavesdroppers on
links named after them (created on first use, at most ``max_links`` links). Queues are bounded; a frame that does
not fit is counted in ``dropped_queue`` for that link only, so a slow listener never blocks the others.

Operators set links, listeners do not (docs/design.md §8): a listener names itself and nothing else. A new
eavesdropper link gets the emulator's settings for new eavesdropper links (its options), or those the operator gave
for that name (``eve_links``: ``--eavesdropper-link``, or a ``Configure`` from the control role before it attaches).
Every link's noise is seeded from the OS unless the operator gives a seed (``--seed``, or ``Configure``); a link's
seed is never reported, only whether it was given (``LinkState.seeded``).

Who may do what (docs/design.md §8): ``Listen`` as the legitimate link only with the receiver's credential,
as eavesdropper N only with the eavesdropper credential named N; ``Send`` and ``Feedback`` (the legitimate link's
CSI) only the transmitter; ``Configure`` and ``GetState`` only the control panel. A second ``Listen`` under an
attached name is refused with ALREADY_EXISTS unless it comes from the same principal (a reconnect: it replaces the
old stream).

Serving: the servicer is asynchronous (``grpc.aio``), so a ``Listen`` stream costs a coroutine, not a thread; state
changes and the channel maths run on the host's thread pool under the emulator's lock, so the event loop (and the
health service) stay responsive during a large ``Send``. ``Send`` passes the batch through the legitimate link
itself and hands it to the fan-out for the eavesdropper links (:mod:`channel_emulator.fanout`: their channels are
drawn in a worker process, off the legitimate link's interpreter lock), in order, so the legitimate link's rate does
not depend on how many eavesdroppers listen. ``Configure`` waits for the fan-out to catch up, so settings and seeds
apply between the same frames on every link. Links whose listener left are removed after
``grace_s`` of the emulator's clock (injected, so tests need no sleeps).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import torch

from channel_emulator import antennas, schema
from channel_emulator.fanout import Fanout
from channel_emulator.links import Clock, EmulatedLink, Subscriber, checked, warm_up
from channel_emulator.traces import SnrTrace
from diffsem.phy import CsiFeedback
from diffsem.phy.antennas import TX_ANTENNAS
from diffsem.seeds import derive_seed, os_seed
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common import auth
from services_common.errors import AlreadyExists, BadRequest, Exhausted, NotFound, grpc_errors
from services_common.frames import symbols_matrix
from services_common.sizes import MAX_FRAMES, frames_request_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")  # a link name is a credential name (services_common.auth)
MAX_POWER = 2.0
LEGIT, EAVESDROPPER = common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER


class Emulator:
    """Links, listeners and counters; thread-safe (one lock around every state change).

    ``legit`` / ``eve_defaults``: settings updates over :func:`channel_emulator.schema.initial` for the legitimate
    link and for each new eavesdropper link; ``eve_links``: more updates for the eavesdropper links of those names
    (the operator's, e.g. an SNR offset per eavesdropper). ``seed``: the base of every link's seed (a link's is
    ``derive_seed(seed, name)``); None: each link draws its own from the OS. ``clock``: seconds, drives traces and
    link expiry (default
    ``time.time``); frame timestamps stay on the wall clock, because they are compared with the transmitter's.
    ``max_links``: links at most (RESOURCE_EXHAUSTED past it); ``grace_s``: how long a link without a listener
    stays; ``trace_dir``: the folder ``SnrTrace.name`` resolves in (None: names are refused); ``k``: real values
    per frame, which an ofdm link's grid must carry (checked when it is configured); ``fanout``: where eavesdropper
    links draw, ``process`` (a worker process: the service) or ``thread`` (in-process use).
    """

    def __init__(self, legit_name: str = "receiver", legit: pb.LinkSettings | None = None,
                 eve_defaults: pb.LinkSettings | None = None, seed: int | None = None, clock: Clock = time.time,
                 max_links: int = 1024, grace_s: float = 300.0, trace_dir: Path | None = None, k: int = 256,
                 eve_links: dict[str, pb.LinkSettings] | None = None, fanout: str = "thread"):
        if max_links < 1 or grace_s < 0 or k < 2 or k % 2:
            raise BadRequest(f"max_links={max_links} must be >= 1, grace_s={grace_s} >= 0 and k={k} even and >= 2")
        self.k = k
        self.lock = threading.RLock()
        self.seed, self.legit_name, self.clock = seed, legit_name, clock
        self.max_links, self.grace_s, self.trace_dir = max_links, grace_s, trace_dir
        self.eve_defaults, _, _ = checked(schema.initial(), eve_defaults or pb.LinkSettings(), False, k=k)
        self.eve_links = {}
        for name, update in (eve_links or {}).items():
            self._check_new(name, EAVESDROPPER)
            self.eve_links[name], _, _ = checked(self.eve_defaults, update, False, k=k)
        self.frames = 0
        first, _, _ = checked(schema.initial(), legit or pb.LinkSettings(), True, k=k)
        first.seed = self._link_seed(legit_name)
        self.links: dict[str, EmulatedLink] = {
            legit_name: EmulatedLink(legit_name, LEGIT, first, clock(), k, seed is not None)}
        antennas.check_plan({legit_name: first}, legit_name, self._new_links({}), k, schema.config)
        for phy in {first.phy, self.eve_defaults.phy}:
            warm_up(phy)
        if fanout not in ("process", "thread"):
            raise BadRequest(f"fanout={fanout!r}: use 'process' or 'thread'")
        self.fanout = Fanout(self.links, self.lock, k, fanout == "process")

    def close(self) -> None:
        """Stop the fan-out (after the batches it holds)."""
        self.fanout.close()

    # ---- links -----------------------------------------------------------------------------------------
    def _link_seed(self, name: str) -> int:
        """A new link's seed: derived from the operator's base seed and its name, else fresh from the OS."""
        return os_seed() if self.seed is None else derive_seed(self.seed, name)

    def _check_new(self, name: str, role: int) -> None:
        if not NAME_RE.match(name):
            raise BadRequest(f"link name {name!r}: use 1-64 letters, digits, '_', '-' (starting alnum)")
        if role != EAVESDROPPER:
            raise BadRequest(f"only the link {self.legit_name!r} is legitimate; new links are eavesdropper links")

    def _new_link(self, name: str, now: float) -> EmulatedLink:
        self._check_new(name, EAVESDROPPER)
        self._expire(now)
        if len(self.links) >= self.max_links:
            raise Exhausted(f"the emulator holds its limit of {self.max_links} links; links without a listener "
                            f"are removed {self.grace_s:g} s after it left")
        settings = pb.LinkSettings()
        settings.CopyFrom(self.eve_links.get(name, self.eve_defaults))
        settings.seed = self._link_seed(name)
        link = EmulatedLink(name, EAVESDROPPER, settings, now, self.k, self.seed is not None)
        self.links[name] = link
        return link

    def _new_links(self, links: dict[str, pb.LinkSettings]) -> dict[str, pb.LinkSettings]:
        """The settings links not in ``links`` will get when they are created, by what they are called."""
        pending = {f"eavesdropper link {n}": s for n, s in self.eve_links.items() if n not in links}
        return {**pending, "new eavesdropper links": self.eve_defaults}

    def _expire(self, now: float) -> None:
        """Remove eavesdropper links whose listener left more than ``grace_s`` ago (never the legitimate one)."""
        old = [n for n, lk in self.links.items()
               if not lk.legit and lk.detached_at is not None and now - lk.detached_at >= self.grace_s]
        for name in old:
            del self.links[name]
        if old:
            log.info("removed %d links without a listener for %g s: %s", len(old), self.grace_s, ", ".join(old[:10]))

    def _legit_snr(self, now: float) -> float:
        return self.links[self.legit_name].snr_db(now, 0.0)

    def _listen_name(self, role: int, name: str) -> str:
        if role == LEGIT:
            name = name or self.legit_name
            if name != self.legit_name:
                raise BadRequest(f"the legitimate link is {self.legit_name!r}, not {name!r}")
        elif role != EAVESDROPPER:
            raise BadRequest("Listen needs role ROLE_LEGITIMATE or ROLE_EAVESDROPPER")
        elif not name or name == self.legit_name:
            raise BadRequest(f"an eavesdropper needs its own link name (not empty, not {self.legit_name!r})")
        return name

    def subscribe(self, role: int, name: str, loop: asyncio.AbstractEventLoop,
                  principal: str | None = None) -> tuple[EmulatedLink, Subscriber]:
        """Attach a listener; create an eavesdropper link on first use, with the operator's settings for it.

        A link with a listener is refused (ALREADY_EXISTS) unless the new one is the same ``principal`` (the
        verified caller, e.g. ``eavesdropper:eve``; its tokens change with every call): then it is a reconnect and
        replaces the old stream. Without authentication there is no principal to prove a reconnect, so the old
        stream must end first.
        """
        name = self._listen_name(role, name)
        with self.lock:
            now = self.clock()
            link = self.links.get(name)
            if link is None:
                link = self._new_link(name, now)
            elif link.role != role:
                raise BadRequest(f"link {name!r} is a {common_pb2.Role.Name(link.role)} link")
            old = link.subscriber
            if old is not None and not old.closed:
                if principal is None or principal != old.principal:
                    raise AlreadyExists(f"a listener is attached as {name!r}; only the same principal may reconnect")
                log.info("listener %s reconnected; its old stream ends", name)
                old.close()
            link.subscriber = Subscriber(name, link.settings.queue_size, loop, principal)
            link.detached_at = None
            log.info("listener %s attached (%s)", name, common_pb2.Role.Name(role))
            return link, link.subscriber

    def unsubscribe(self, name: str, sub: Subscriber) -> None:
        sub.close()
        with self.lock:
            link = self.links.get(name)
            if link is not None and link.subscriber is sub:
                link.subscriber = None
                link.detached_at = self.clock()
                log.info("listener %s detached", name)

    def _dry_run(self, updates: list[pb.LinkUpdate], now: float) -> None:
        """Validate every update on copies; raises on the first bad one. Creations count against ``max_links``."""
        creating = 0
        after = {name: lk.settings for name, lk in self.links.items()}
        for u in updates:
            link = self.links.get(u.name)
            if link is None:
                if not NAME_RE.match(u.name):  # a malformed name first: it can be no link at all
                    raise BadRequest(f"link name {u.name!r}: use 1-64 letters, digits, '_', '-' (starting alnum)")
                if u.role == common_pb2.ROLE_UNSPECIFIED or u.remove:
                    raise NotFound(f"no link named {u.name!r} (to create one, set role ROLE_EAVESDROPPER); "
                                   f"links: {', '.join(list(self.links)[:20])}")
                self._check_new(u.name, u.role)
                creating += 1
                after[u.name], _, _ = checked(self.eve_links.get(u.name, self.eve_defaults), u.settings, False,
                                              self.trace_dir, self.k)
                continue
            if u.role not in (common_pb2.ROLE_UNSPECIFIED, link.role):
                raise BadRequest(f"link {u.name!r} is a {common_pb2.Role.Name(link.role)} link")
            if u.remove:
                if link.legit:
                    raise BadRequest("the legitimate link cannot be removed")
                after.pop(u.name, None)
                continue
            after[u.name], _, _ = checked(after[u.name], u.settings, link.legit, self.trace_dir, self.k)
        antennas.check_plan(after, self.legit_name, self._new_links(after), self.k, schema.config)
        if len(self.links) + creating > self.max_links:
            raise Exhausted(f"{creating} new links would pass the limit of {self.max_links} links")

    def configure(self, updates: list[pb.LinkUpdate], validate_only: bool = False) -> None:
        """Validate every update first, then apply them all (all or nothing); ``validate_only`` applies none."""
        self.fanout.join()  # every link has seen every frame sent before this change
        with self.lock:
            now = self.clock()
            self._expire(now)
            self._dry_run(updates, now)
            if validate_only:
                return
            for u in updates:
                if u.remove:
                    link = self.links.pop(u.name)
                    if link.subscriber is not None:
                        link.subscriber.close()
                    continue
                link = self.links.get(u.name) or self._new_link(u.name, now)
                link.update(u.settings, now, self.trace_dir)
                if link.subscriber is not None:
                    link.subscriber.size = link.settings.queue_size
                warm_up(link.settings.phy)

    def set_trace(self, name: str, trace: SnrTrace) -> None:
        """Give link ``name`` an SNR trace read by the operator at start-up (``--trace LINK=FILE``)."""
        with self.lock:
            link = self.links.get(name) or self._new_link(name, self.clock())
            link.trace, link.trace_start = trace, self.clock()

    # ---- traffic ---------------------------------------------------------------------------------------
    def send(self, frames: list[frame_pb2.Frame]) -> tuple[int, int]:
        """Broadcast a batch; returns (frames accepted, listeners it was queued for)."""
        if not frames:
            return 0, 0
        if len(frames) > MAX_FRAMES:
            raise BadRequest(f"{len(frames)} frames in one Send; at most {MAX_FRAMES}")
        x: torch.Tensor | antennas.Batch = symbols_matrix(frames, None, "frame")  # dtype float32, 1-D, one length, finite
        if x.shape[1] % 2 or x.shape[1] == 0:
            raise BadRequest(f"frames in one Send must share one even, non-zero length k; got length {x.shape[1]}")
        if float(x.pow(2).mean(dim=1).max()) > MAX_POWER:
            raise BadRequest(f"frame power above {MAX_POWER} per real dimension; frames must have power <= 1 "
                             "(a + sigma_self^2)")
        with self.lock:
            legit = self.links[self.legit_name]
            n_tx = legit.settings.antennas.n_tx
            if n_tx > 1 or legit.antennas.drawn is not None:  # antenna signals precoded on the drawn CSI
                x = antennas.batch(legit.antennas.drawn, x, frames, n_tx)
                legit.antennas.drawn = None
            now, wall = self.clock(), time.time()
            legit_snr = self._legit_snr(now)
            self.frames += len(frames)
            listeners = self._deliver(self.links[self.legit_name], frames, x, legit_snr, wall)
            self.fanout.offer((frames, x, now, wall, legit_snr))
            self._expire(now)
        return len(frames), listeners + sum(1 for lk in self._eve_links() if lk.subscriber and not lk.subscriber.closed)

    def _eve_links(self) -> list[EmulatedLink]:
        return [lk for lk in self.links.values() if not lk.legit]

    def _deliver(self, link: EmulatedLink, frames: list[frame_pb2.Frame], x: torch.Tensor | antennas.Batch,
                 snr_db: float, wall: float) -> int:
        """Pass a batch through one link and queue it for its listener; 1 if it has one, else 0."""
        link.counts["frames_in"] += len(frames)
        sub = link.subscriber
        if sub is None or sub.closed:
            link.counts["no_listener"] += len(frames)
            return 0
        items = link.received(frames, x, snr_db, wall, sub.space())
        sub.offer(items, len(frames) - len(items))
        return 1

    def feedback(self, name: str, n: int) -> pb.FeedbackReply:
        """The transmitter's CSI of the legitimate link for its next ``n`` frames, whose channel is drawn now and
        carried by the next Send (:meth:`diffsem.phy.Link.feedback`): per frame N0/|h|^2 (flat), or per RE,
        delayed and quantised (ofdm)."""
        name = name or self.legit_name
        if name != self.legit_name:
            raise BadRequest(f"CSI feedback is the legitimate link's ({self.legit_name!r}), not {name!r}'s")
        if not 1 <= n <= MAX_FRAMES:
            raise BadRequest(f"feedback for frames={n}; ask for 1 to {MAX_FRAMES}")
        with self.lock:
            link = self.links[name]
            snr = self._legit_snr(self.clock())
            if link.settings.antennas.n_tx > 1:  # the channel matrices and the CSI fed back, drawn ahead
                return link.antennas.draw_ahead(n, snr, link.settings.antennas, link.link.cfg, self.k)
            csi = link.feedback(n, snr)
            if isinstance(csi.sigma_c2, CsiFeedback):
                return pb.FeedbackReply(phy="ofdm", frames=n, codes=csi.sigma_c2.symbol_codes().numpy().tobytes(),
                                        sigma_c2=csi.mean())
            return pb.FeedbackReply(phy="flat", frames=n, sigma_c2=csi.mean(), frame_sigma_c2=csi.sigma_c2.tolist())

    # ---- state -----------------------------------------------------------------------------------------
    def link_state(self, link: EmulatedLink, now: float, legit_snr: float) -> pb.LinkState:
        snr = link.snr_db(now, legit_snr)
        n0, sigma_c2 = link.csi(snr)
        sub = link.subscriber
        attached = sub is not None and not sub.closed
        settings = pb.LinkSettings()
        settings.CopyFrom(link.settings)
        settings.ClearField("seed")  # never reported: an OS-drawn seed would let its reader replay the link's noise
        for f in (*antennas.TRANSMITTER_FIELDS, *antennas.ENVIRONMENT_FIELDS):  # the legitimate link's: every link's
            setattr(settings.antennas, f, getattr(self.links[self.legit_name].settings.antennas, f))
        for f in antennas.CSI_FIELDS if not link.legit else ("correlation",):  # the other side's: not this link's
            settings.antennas.ClearField(f)
        for f in antennas.unused_fields(settings.phy):  # on ofdm the link's own CSI and channel rule
            settings.antennas.ClearField(f)
        state = pb.LinkState(
            name=link.name, role=link.role, attached=attached, snr_db=snr, n0=n0, sigma_c2=sigma_c2,
            gain_re=link.last_gain.real, gain_im=link.last_gain.imag, has_trace=link.trace is not None,
            queue_depth=len(sub.items) if sub else 0, settings=settings, seeded=link.seeded,
            detached_s=0.0 if link.detached_at is None else now - link.detached_at, **link.counts)
        state.subcarrier_snr_db.extend(link.snr_picture())
        return state

    def state(self, name: str = "") -> pb.ChannelState:
        with self.lock:
            now = self.clock()
            self._expire(now)
            legit_snr = self._legit_snr(now)
            if name and name not in self.links:
                raise NotFound(f"no link named {name!r}; links: {', '.join(list(self.links)[:20])}")
            links = [self.links[name]] if name else list(self.links.values())
            return pb.ChannelState(links=[self.link_state(lk, now, legit_snr) for lk in links], frames=self.frames,
                                   time=now)


class ChannelEmulatorServicer(pb_grpc.ChannelEmulatorServicer):
    """gRPC wiring of :class:`Emulator` (async). The door (``services_common.door``) checks every caller's role by
    ``RULES``; ``verifier`` is the same one, for the rule that depends on the request: ``Listen`` under one's own
    name (key None: off). The largest request is a ``Send`` of :data:`MAX_FRAMES` frames of k values per transmit
    antenna."""

    SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ChannelEmulator"].full_name
    RULES = {"Send": (auth.TRANSMITTER,), "Listen": (auth.RECEIVER, auth.EAVESDROPPER), "Configure": (auth.CONTROL,),
             "GetState": (auth.CONTROL,), "Feedback": (auth.TRANSMITTER,)}

    def __init__(self, emulator: Emulator, verifier: auth.Verifier | None = None):
        self.emu = emulator
        self.verifier = verifier or auth.Verifier(None)
        self.max_request_bytes = frames_request_bytes(emulator.k * max(TX_ANTENNAS))  # n_tx antennas' signals

    def register(self, server: Any) -> None:
        pb_grpc.add_ChannelEmulatorServicer_to_server(self, server)

    @staticmethod
    async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
        """Run a call that takes the emulator's lock on the thread pool, so the loop never waits for the lock."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @grpc_errors
    async def Send(self, request: pb.SendRequest, context: grpc.aio.ServicerContext) -> pb.SendReply:
        accepted, listeners = await self._off_loop(self.emu.send, list(request.frames))
        return pb.SendReply(accepted=accepted, listeners=listeners)

    def _require_listener(self, context: grpc.aio.ServicerContext, role: int, name: str) -> str | None:
        """Who the caller is (``role:name``) after checking it may listen as ``(role, name)``; None without auth."""
        if role == LEGIT:
            who = self.verifier.require(context, [auth.RECEIVER], self.emu.legit_name)
        else:
            who = self.verifier.require(context, [auth.EAVESDROPPER], name)
        return None if who is None else str(who)

    @grpc_errors
    async def Listen(self, request: pb.ListenRequest,
                     context: grpc.aio.ServicerContext) -> AsyncIterator[frame_pb2.ReceivedFrame]:
        principal = self._require_listener(context, request.role, request.name)
        loop = asyncio.get_running_loop()
        link, sub = await self._off_loop(self.emu.subscribe, request.role, request.name, loop, principal)
        try:
            while (item := await sub.get()) is not None:
                at, rf = item
                if at > time.time():
                    await asyncio.sleep(at - time.time())
                now = time.time()
                rf.deliver_time = now
                rf.queue_drops = sub.dropped
                deadline = link.settings.deadline_ms
                if deadline > 0 and (now - rf.frame.header.send_time) * 1000.0 > deadline:
                    rf.late = True
                    link.counts["late"] += 1
                link.counts["delivered"] += 1
                yield rf
        finally:  # cancelled or replaced: detach without waiting here (a cancelled generator must not block)
            loop.run_in_executor(None, self.emu.unsubscribe, link.name, sub)

    @grpc_errors
    async def Configure(self, request: pb.ConfigureRequest, context: grpc.aio.ServicerContext) -> pb.ChannelState:
        await self._off_loop(self.emu.configure, list(request.links), request.validate_only)
        return await self._off_loop(self.emu.state)

    @grpc_errors
    async def GetState(self, request: pb.GetStateRequest, context: grpc.aio.ServicerContext) -> pb.ChannelState:
        return await self._off_loop(self.emu.state, request.link)

    @grpc_errors
    async def Feedback(self, request: pb.FeedbackRequest, context: grpc.aio.ServicerContext) -> pb.FeedbackReply:
        return await self._off_loop(self.emu.feedback, request.link, request.frames)


__all__ = ["ChannelEmulatorServicer", "Emulator"]
