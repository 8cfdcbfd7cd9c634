"""A listener's loop: subscribe to the emulator, batch what arrives, process, report to telemetry.

Three daemon threads:

- **subscribe**: a server-streaming ``Listen(role, name)`` carrying the listener's credential; on a broken stream
  (emulator restart, deadline) it resubscribes with back-off. The emulator lets the same credential replace its
  older subscription, so a restarted receiver simply reattaches; a refused credential or name is fatal.
- **batch**: a dynamic batcher like Triton's: it blocks for the first frame, then collects more until
  ``max_batch`` frames or ``max_wait_ms`` have passed, and calls ``process(frames) -> reports``.
- **report**: sends reports to the panel's ``Telemetry.Report`` in chunks, with a deadline and retries.

Frames the link lost (``dropped``) never reach ``process``: they are reported as ``lost`` directly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import grpc

from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import frame_pb2, telemetry_pb2, telemetry_pb2_grpc
from services_common import metrics as m
from services_common.client import SHORT_DEADLINE_S, grpc_channel

log = logging.getLogger(__name__)
Process = Callable[[list[frame_pb2.ReceivedFrame]], list[telemetry_pb2.Report]]
LISTEN_DEADLINE_S = 3600.0   # a subscription is renewed at least this often
REPORT_CHUNK = 512
WARN_EVERY_S = 10.0  # the same processing error is logged at most this often per listener
FATAL = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED,
         grpc.StatusCode.PERMISSION_DENIED)  # retrying cannot help: the name or the credential is wrong
INBOX_BATCHES = 4  # the inbox holds this many batches; beyond it the stream stalls and the emulator's
                   # bounded per-link queue drops (and counts) what this listener cannot keep up with


def lost_report(rf: frame_pb2.ReceivedFrame, name: str, method: str, error: str = "") -> telemetry_pb2.Report:
    return telemetry_pb2.Report(message_id=rf.frame.message_id, seq=rf.frame.seq, listener=name, role=rf.role,
                                method=method, lost=True, report_time=time.time(), error=error)


class ListenerLoop:
    """Subscribe as ``(role, name)`` to ``emulator`` and feed batches to ``process``; every call (Listen, Report)
    carries ``credential``."""

    def __init__(self, emulator: str, role: int, name: str, process: Process, method: str,
                 telemetry: str | None = None, max_batch: int = 64, max_wait_ms: float = 5.0,
                 defaults: ch_pb.LinkSettings | None = None, credential: str | None = None):
        self.role, self.name, self.process, self.method = role, name, process, method
        self.max_batch, self.max_wait_s = max(1, max_batch), max(0.0, max_wait_ms) / 1000.0
        self.defaults = defaults
        self._emulator = grpc_channel(emulator, credential)
        self._telemetry = grpc_channel(telemetry, credential) if telemetry else None
        self.inbox: queue.Queue[frame_pb2.ReceivedFrame] = queue.Queue(maxsize=INBOX_BATCHES * self.max_batch)
        self.outbox: queue.Queue[list[telemetry_pb2.Report]] = queue.Queue()
        self.stopped = threading.Event()
        self.attached = threading.Event()
        self.fatal: str | None = None
        self._warned: dict[str, float] = {}
        self.on_fatal: Callable[[str], None] | None = None
        self.counts = {"frames": 0, "batches": 0, "reports": 0, "report_failures": 0, "subscriptions": 0, "lost": 0}
        self._call: grpc.Call | None = None
        self._threads = [threading.Thread(target=t, name=f"{name}-{t.__name__}", daemon=True)
                         for t in (self._subscribe_loop, self._batch_loop, self._report_loop)]

    def start(self) -> ListenerLoop:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        """Unsubscribe, finish the batch in hand, flush reports (up to ``timeout``)."""
        self.stopped.set()
        if self._call is not None:
            self._call.cancel()
        for t in self._threads:
            t.join(timeout)
        self._emulator.close()
        if self._telemetry is not None:
            self._telemetry.close()

    # ---- threads -------------------------------------------------------------------------------------
    def _subscribe_loop(self) -> None:
        stub = ch_grpc.ChannelEmulatorStub(self._emulator)
        req = ch_pb.ListenRequest(role=self.role, name=self.name)
        if self.defaults is not None:
            req.defaults.CopyFrom(self.defaults)
        backoff = 0.1
        while not self.stopped.is_set():
            try:
                self._call = stub.Listen(req, timeout=LISTEN_DEADLINE_S, wait_for_ready=True)
                self.counts["subscriptions"] += 1
                m.SUBSCRIPTIONS.labels(self.name).inc()
                for rf in self._call:
                    if not self.attached.is_set():
                        self.attached.set()
                        m.ATTACHED.labels(self.name).set(1)
                        log.info("attached to the emulator as %r", self.name)
                    while not self.stopped.is_set():  # bounded: a slow listener backs up into the emulator
                        try:
                            self.inbox.put(rf, timeout=0.25)
                            break
                        except queue.Full:
                            continue
                    m.QUEUE_DEPTH.labels(self.name).set(self.inbox.qsize())
                    backoff = 0.1
                if not self.stopped.is_set():  # ended cleanly: replaced by a newer subscription of this name
                    log.warning("the emulator ended the subscription as %r (another listener took the name?)",
                                self.name)
                    backoff = 2.0
            except grpc.RpcError as exc:
                if self.stopped.is_set():
                    break
                if exc.code() in FATAL:
                    self.fatal = f"emulator refused the subscription: {exc.details()}"
                    log.error(self.fatal)
                    self.stopped.set()
                    if self.on_fatal is not None:
                        self.on_fatal(self.fatal)
                    break
                log.warning("subscription as %r ended (%s: %s); resubscribing", self.name, exc.code().name,
                            exc.details())
            self.attached.clear()
            m.ATTACHED.labels(self.name).set(0)
            self.stopped.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _next_batch(self) -> list[frame_pb2.ReceivedFrame]:
        try:
            batch = [self.inbox.get(timeout=0.25)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _batch_loop(self) -> None:
        while not (self.stopped.is_set() and self.inbox.empty()):
            batch = self._next_batch()
            if not batch:
                continue
            lost = [lost_report(rf, self.name, self.method) for rf in batch if rf.dropped]
            live = [rf for rf in batch if not rf.dropped]
            reports = list(lost)
            if live:
                started = time.perf_counter()
                reports += self._process(live)
                m.DECODE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
                m.BATCH_SIZE.labels(self.name).observe(len(live))
            self.counts["frames"] += len(batch)
            self.counts["batches"] += 1
            n_lost = sum(r.lost for r in reports)
            self.counts["lost"] += n_lost
            m.FRAMES_IN.labels(self.name).inc(len(batch))
            m.FRAMES_LOST.labels(self.name).inc(n_lost)
            m.QUEUE_DEPTH.labels(self.name).set(self.inbox.qsize())
            if live:
                log.debug("%s: batch of %d frames, first message %s", self.name, len(batch),
                          batch[0].frame.message_id,
                          extra={"message_id": batch[0].frame.message_id, "listener": self.name})
            self.outbox.put(reports)

    def _process(self, frames: list[frame_pb2.ReceivedFrame]) -> list[telemetry_pb2.Report]:
        """Process a batch; if it fails, isolate the bad frames one by one and report them lost."""
        try:
            return self.process(frames)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the listener
            if len(frames) == 1:
                error = str(exc)
                now = time.monotonic()
                if now - self._warned.get(error, -WARN_EVERY_S) >= WARN_EVERY_S:  # a stream of one error: log it once
                    self._warned[error] = now
                    log.warning("frame %s could not be processed: %s", frames[0].frame.message_id, error,
                                extra={"message_id": frames[0].frame.message_id, "listener": self.name})
                return [lost_report(frames[0], self.name, self.method, error)]
            return [r for rf in frames for r in self._process([rf])]

    def _report_loop(self) -> None:
        stub = telemetry_pb2_grpc.TelemetryStub(self._telemetry) if self._telemetry is not None else None
        while not (self.stopped.is_set() and self.outbox.empty() and not self._batch_alive()):
            try:
                reports = self.outbox.get(timeout=0.25)
            except queue.Empty:
                continue
            while len(reports) < REPORT_CHUNK:
                try:
                    reports += self.outbox.get_nowait()
                except queue.Empty:
                    break
            if stub is None:
                continue
            for i in range(0, len(reports), REPORT_CHUNK):
                self._send(stub, reports[i:i + REPORT_CHUNK])

    def _batch_alive(self) -> bool:
        return self._threads[1].is_alive()

    def _send(self, stub: telemetry_pb2_grpc.TelemetryStub, reports: list[telemetry_pb2.Report]) -> None:
        for attempt in range(4):
            try:
                stub.Report(telemetry_pb2.ReportRequest(reports=reports), timeout=SHORT_DEADLINE_S,
                            wait_for_ready=attempt > 0)
                self.counts["reports"] += len(reports)
                m.REPORTS_OUT.labels(self.name).inc(len(reports))
                return
            except grpc.RpcError as exc:
                if attempt == 3 or exc.code() in FATAL:
                    self.counts["report_failures"] += len(reports)
                    m.REPORT_FAILURES.labels(self.name).inc(len(reports))
                    log.warning("telemetry refused %d reports: %s %s", len(reports), exc.code().name, exc.details())
                    return
                time.sleep(0.2 * 2**attempt)
