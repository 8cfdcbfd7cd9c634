"""Test-set runs: stream a slice of a data set through the live stack and watch the accuracies.

A run sends batches of ``batch_size`` images (one ``Transmit`` each, so the transmitter self-noises and the
emulator impairs a whole batch per call, as the offline evaluator does) while keeping at most ``window``
images in flight (sent, not yet decided by the receiver), which bounds the legitimate listener's queue.

Messages that get no legitimate decision are sent again: when no decision at all arrived for
``retry_after_s`` seconds (e.g. the receiver restarted), or when a message is older than ``retry_after_s``
while later ones were decided (lost on the link). A message is resent at most ``max_retries`` times, then
given up (``gave_up``). Re-sends reuse the message id; the ledger keeps only the first report per listener.

Completion: a run is ``done`` only when every listener attached at its start (``expected``) has reported each
frame, or has made no progress for ``report_deadline_s`` seconds after the receiver finished; the frames it never
reported are then counted in ``missed``. Until then the run is ``running`` and ``pending`` lists the listeners
still owing reports. Runs are stored in the panel's database: a panel restart marks a run that was in flight
``interrupted``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import grpc
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from control_panel.errors import Missing, Refused, TooBusy, Upstream, UpstreamError
from control_panel.jobs import cancel, cancel_all, save, track
from control_panel.ledger import Ledger, RunWatch, Tally
from control_panel.store import Store
from diffsem.data import DATASETS, get_spec, load_arrays
from protos.diffsem.v1 import transmitter_pb2
from services_common.client import DEADLINE_S
from services_common.tensors import to_proto

log = logging.getLogger(__name__)
KIND = "run"
SAVE_EVERY_S = 1.0
# A transmitter (or the emulator behind it) restarted by the launcher or the engine is back within seconds on a quiet
# machine and within tens of seconds on a loaded one: a batch is retried that long before the run fails.
TRANSMIT_PATIENCE_S = 90.0


class RunRequest(BaseModel):
    """POST /api/runs body."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    dataset: str = Field("mnist", description=f"one of {', '.join(DATASETS)} (must match the checkpoints)")
    split: Literal["train", "test"] = "test"
    n: int = Field(1000, ge=1, le=70_000, description="number of images; start + n <= the split's size")
    start: int = Field(0, ge=0, description="index of the first image in the split")
    batch_size: int = Field(100, ge=1, le=2048, description="images per Transmit call")
    window: int | None = Field(None, ge=1, le=8192, description="most images in flight (default 4 batches)")
    retry_after_s: float = Field(15.0, gt=0, le=600)
    max_retries: int = Field(3, ge=0, le=20)
    report_deadline_s: float = Field(10.0, gt=0, le=600, description="after the receiver has finished, a listener "
                                     "that reports nothing for this long is counted as having missed its frames")

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        return get_spec(v).name


@dataclass
class Run:
    id: str
    req: RunRequest
    status: str = "queued"
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    sent: int = 0
    retransmits: int = 0
    gave_up: int = 0
    expected: list[str] = field(default_factory=list)  # listeners attached at the start: the run waits for them
    pending: list[str] = field(default_factory=list)  # expected listeners still owing reports
    missed: dict[str, int] = field(default_factory=dict)  # frames a listener never reported before its deadline
    sweep: str | None = None  # the privacy sweep this run is a step of
    task: asyncio.Task | None = field(default=None, repr=False)

    def doc(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "task"} | {"req": self.req.model_dump()}

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> Run:
        return cls(**{**d, "req": RunRequest.model_validate(d["req"])})

    def as_json(self, tallies: dict[str, Tally], legit: str) -> dict[str, Any]:
        decided = tallies[legit].reports if legit in tallies else 0
        elapsed = ((self.finished or time.time()) - self.started) if self.started else 0.0
        return {"id": self.id, "status": self.status, "error": self.error, "request": self.req.model_dump(),
                "sent": self.sent, "decided": decided, "retransmits": self.retransmits, "gave_up": self.gave_up,
                "progress": min(1.0, (decided + self.gave_up) / self.req.n), "elapsed_s": round(elapsed, 3),
                "images_per_s": decided / elapsed if elapsed > 0 else None, "expected": self.expected,
                "pending": self.pending, "missed": self.missed, "sweep": self.sweep,
                "accuracy": {name: t.accuracy for name, t in tallies.items()},
                "listeners": {name: t.as_json() for name, t in tallies.items()}}


class RunManager:
    """Runs as asyncio tasks on the panel's loop; at most ``max_active`` at once (429 past it)."""

    def __init__(self, store: Store, ledger: Ledger, tx: Upstream, attached: Callable[[], Awaitable[set[str]]],
                 max_active: int):
        self.store, self.ledger, self.tx, self.attached = store, ledger, tx, attached
        self.max_active = max_active
        self.active: dict[str, Run] = {}
        self.reserved = 0  # slots held by privacy sweeps between their steps
        self._data: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.interrupted = store.interrupt(KIND, "the control panel stopped while this run was in flight")

    # ---- admission -----------------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Take a slot (a run or a sweep); TooBusy when every slot is in use."""
        if len(self.active) + self.reserved >= self.max_active:
            raise TooBusy(f"{self.max_active} runs and sweeps are already in flight (the limit); retry when one "
                          "has finished", retry_after_s=5)
        self.reserved += 1

    async def dataset(self, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images, labels)``: images uint8 (N, 1, 28, 28), labels (N,)."""
        key = (name, split)
        if key not in self._data:
            images, labels = await asyncio.to_thread(load_arrays, name, split)
            self._data[key] = (images[:, None], labels)  # uint8 as stored: a quarter of the float32 split's memory
        return self._data[key]

    async def check(self, req: RunRequest) -> tuple[np.ndarray, np.ndarray]:
        """The slice's uint8 images and labels; 422 when it is outside the split (a missing data set: 503)."""
        images, labels = await self.dataset(req.dataset, req.split)
        if req.start + req.n > len(images):
            raise Refused(f"start + n = {req.start + req.n} exceeds the {len(images)} images of "
                          f"{req.dataset}/{req.split}; accepted: start + n <= {len(images)}")
        return images[req.start:req.start + req.n], labels[req.start:req.start + req.n]

    async def start(self, req: RunRequest, sweep: str | None = None) -> Run:
        """Validate and start a run. A sweep passes its id and has already reserved the slot."""
        if sweep is None:
            self.reserve()
        try:
            images, labels = await self.check(req)
            expected = sorted(await self.attached())
        finally:
            if sweep is None:
                self.reserved -= 1
        run = Run(uuid.uuid4().hex[:12], req, expected=expected, pending=list(expected), sweep=sweep)
        self.active[run.id] = run
        self._save(run)
        run.task = asyncio.create_task(self._execute(run, images, labels))
        return run

    # ---- reads and deletion --------------------------------------------------------------------------------
    def get(self, run_id: str) -> Run | None:
        if run_id in self.active:
            return self.active[run_id]
        doc = self.store.load_doc(KIND, run_id)
        return Run.from_doc(doc) if doc else None

    def as_json(self, run: Run) -> dict[str, Any]:
        return run.as_json(self.ledger.tallies.of(run.id), self.ledger.legit)

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        runs = [self.active.get(d["id"]) or Run.from_doc(d) for d in self.store.list_docs(KIND, limit, offset)]
        return [self.as_json(r) for r in runs]

    async def delete(self, run_id: str) -> str:
        """Cancel a run in flight ("cancelling"), or delete a finished one with its messages ("deleted")."""
        if cancel(self.active, run_id):
            return "cancelling"
        if not self.store.delete_doc(KIND, run_id):
            raise Missing(f"no run {run_id!r}")
        self.ledger.forget_run(run_id)
        return "deleted"

    def stop(self) -> None:
        cancel_all(self.active.values())

    def _save(self, run: Run) -> None:
        save(self.store, KIND, run)

    # ---- execution -----------------------------------------------------------------------------------------
    async def _execute(self, run: Run, images: np.ndarray, labels: np.ndarray) -> None:
        watch = self.ledger.watch(run.id)
        run.status, run.started = "running", time.time()
        try:
            await track(run, self._complete(run, watch, images, labels), "run")
        finally:
            run.finished = time.time()
            self._save(run)
            self.ledger.unwatch(run.id)
            self.active.pop(run.id, None)

    async def _complete(self, run: Run, watch: RunWatch, images: np.ndarray, labels: np.ndarray) -> None:
        self._save(run)
        await self._stream(run, watch, images, labels)
        await self._settle(run, watch)

    async def _transmit(self, ids: list[str], images: np.ndarray) -> None:
        """Send uint8 images as float32 in [0, 1], the values ``load_split`` gives (k / 255)."""
        req = transmitter_pb2.TransmitRequest(images=to_proto(images.astype(np.float32) / 255), message_ids=ids)
        give_up = time.monotonic() + TRANSMIT_PATIENCE_S
        for attempt in itertools.count():
            try:
                await self.tx.call("Transmit", req, timeout=DEADLINE_S)
                return
            except UpstreamError as exc:
                if (time.monotonic() > give_up
                        or exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE)):
                    raise RuntimeError(f"transmitter refused a batch: {exc.code.name}: {exc.details}") from None
                await asyncio.sleep(min(0.5 * 2**attempt, 4.0))

    async def _stream(self, run: Run, watch: RunWatch, images: np.ndarray, labels: np.ndarray) -> None:
        req = run.req
        n, bs = len(images), req.batch_size
        window = req.window or max(4 * bs, 64)
        ids = self.ledger.register_run(run.id, list(range(req.start, req.start + n)), labels.tolist())
        sent_at: dict[int, float] = {}  # position in the run -> last send time, for undecided messages
        tries: dict[int, int] = {}
        decided, newest = 0, -1
        last_progress = last_save = time.monotonic()
        while decided + run.gave_up < n:
            while run.sent < n and len(sent_at) + min(bs, n - run.sent) <= max(window, bs):
                idx = list(range(run.sent, min(run.sent + bs, n)))
                await self._transmit([ids[i] for i in idx], images[idx[0]:idx[-1] + 1])
                sent_at.update(dict.fromkeys(idx, time.monotonic()))
                run.sent += len(idx)
            watch.progress.clear()
            try:
                await asyncio.wait_for(watch.progress.wait(), timeout=0.5)
            except TimeoutError:
                pass
            newly = [i - req.start for i in watch.decided if i - req.start in sent_at]
            watch.decided.clear()
            for i in newly:
                del sent_at[i]
            decided += len(newly)
            now = time.monotonic()
            if newly:
                last_progress, newest = now, max(newest, *newly)
            stalled = now - last_progress > req.retry_after_s
            overdue = sorted(i for i, t in sent_at.items() if stalled or (now - t > req.retry_after_s and newest > i))
            if overdue:
                await self._resend(run, overdue, ids, images, sent_at, tries)
                last_progress = time.monotonic()
            if now - last_save > SAVE_EVERY_S:
                self._save(run)
                last_save = now

    async def _resend(self, run: Run, overdue: list[int], ids: list[str], images: np.ndarray,
                      sent_at: dict[int, float], tries: dict[int, int]) -> None:
        again = []
        for i in overdue:
            tries[i] = tries.get(i, 0) + 1
            if tries[i] > run.req.max_retries:
                del sent_at[i]
                run.gave_up += 1
            else:
                again.append(i)
        log.info("run %s: resending %d undecided images (%d given up)", run.id, len(again), run.gave_up)
        for j in range(0, len(again), run.req.batch_size):
            chunk = again[j:j + run.req.batch_size]
            await self._transmit([ids[i] for i in chunk], images[chunk])
            sent_at.update(dict.fromkeys(chunk, time.monotonic()))
            run.retransmits += len(chunk)

    async def _settle(self, run: Run, watch: RunWatch) -> None:
        """Wait until every expected listener has reported each frame, or has been silent past the deadline."""
        n, deadline_s = run.req.n, run.req.report_deadline_s
        since = time.monotonic()
        while True:
            tallies = self.ledger.tallies.of(run.id)
            owed = {name: n - (tallies[name].reports if name in tallies else 0) for name in run.expected}
            if self.ledger.legit in owed:  # the receiver owes nothing for the frames the run gave up on
                owed[self.ledger.legit] -= run.gave_up
            run.pending = [name for name, k in owed.items() if k > 0 and name not in run.missed]
            if not run.pending:
                return
            now = time.monotonic()
            for name in run.pending:
                if now - max(watch.last_report.get(name, since), since) > deadline_s:
                    run.missed[name] = owed[name]
                    log.warning("run %s: %s reported nothing for %.1f s; %d frames counted missed", run.id, name,
                                deadline_s, owed[name])
            watch.progress.clear()
            try:
                await asyncio.wait_for(watch.progress.wait(), timeout=min(0.5, deadline_s))
            except TimeoutError:
                pass
