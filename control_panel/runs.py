"""Test-set runs: stream a slice of a data set through the live stack and watch the accuracies.

A run sends batches of ``batch_size`` images (one ``Transmit`` each, so the transmitter self-noises and the
emulator impairs a whole batch per call, as the offline evaluator does) while keeping at most ``window``
images in flight (sent, not yet decided by the receiver), which bounds the legitimate listener's queue.

Messages that get no legitimate decision are sent again: when no decision at all arrived for
``retry_after_s`` seconds (e.g. the receiver restarted), or when a message is older than ``retry_after_s``
while later ones were decided (lost on the link). A message is resent at most ``max_retries`` times, then
given up (``gave_up``). Re-sends reuse the message id; the ledger keeps only the first report per listener.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
import torch
from pydantic import BaseModel, ConfigDict, Field

from control_panel.ledger import Ledger
from diffsem.data import load_split
from protos.diffsem.v1 import transmitter_pb2, transmitter_pb2_grpc
from services_common.client import DEADLINE_S
from services_common.tensors import to_proto

log = logging.getLogger(__name__)


class RunRequest(BaseModel):
    """POST /api/runs body."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field("mnist", description="mnist or fashion-mnist (must match the checkpoints)")
    split: str = Field("test", pattern="^(train|test)$")
    n: int = Field(1000, ge=1, le=70_000, description="number of images")
    start: int = Field(0, ge=0, description="index of the first image in the split")
    batch_size: int = Field(100, ge=1, le=2048, description="images per Transmit call")
    window: int | None = Field(None, ge=1, le=8192, description="most images in flight (default 4 batches)")
    retry_after_s: float = Field(15.0, gt=0, le=600)
    max_retries: int = Field(3, ge=0, le=20)


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
    task: asyncio.Task | None = None

    def as_json(self, ledger: Ledger) -> dict[str, Any]:
        tallies = ledger.run_tallies.get(self.id, {})
        legit = tallies.get(ledger.legit)
        decided = legit.reports if legit else 0
        elapsed = ((self.finished or time.time()) - self.started) if self.started else 0.0
        return {"id": self.id, "status": self.status, "error": self.error, "request": self.req.model_dump(),
                "sent": self.sent, "decided": decided, "retransmits": self.retransmits, "gave_up": self.gave_up,
                "progress": (decided + self.gave_up) / self.req.n, "elapsed_s": round(elapsed, 3),
                "images_per_s": decided / elapsed if elapsed > 0 else None,
                "accuracy": {name: t.correct / t.labelled if t.labelled else None for name, t in tallies.items()},
                "listeners": {name: t.as_json() for name, t in tallies.items()}}


class RunManager:
    """Starts runs as asyncio tasks on the panel's loop."""

    def __init__(self, ledger: Ledger, transmitter: transmitter_pb2_grpc.TransmitterStub):
        self.ledger = ledger
        self.tx = transmitter
        self.runs: dict[str, Run] = {}
        self._data: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    async def dataset(self, name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, split)
        if key not in self._data:
            self._data[key] = await asyncio.to_thread(load_split, name, split)
        return self._data[key]

    def start(self, req: RunRequest) -> Run:
        run = Run(uuid.uuid4().hex[:12], req)
        self.runs[run.id] = run
        run.task = asyncio.create_task(self._execute(run))
        return run

    async def _transmit(self, run: Run, ids: list[str], images: torch.Tensor) -> None:
        req = transmitter_pb2.TransmitRequest(images=to_proto(images.contiguous()), message_ids=ids)
        for attempt in range(5):
            try:
                await self.tx.Transmit(req, timeout=DEADLINE_S)
                return
            except grpc.aio.AioRpcError as exc:
                if attempt == 4 or exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
                    raise RuntimeError(f"transmitter refused a batch: {exc.code().name}: {exc.details()}") from None
                await asyncio.sleep(0.5 * 2**attempt)

    async def _execute(self, run: Run) -> None:
        req = run.req
        try:
            images, labels = await self.dataset(req.dataset, req.split)
            if req.start + req.n > len(images):
                raise ValueError(f"start + n = {req.start + req.n} exceeds the {len(images)} images of "
                                 f"{req.dataset}/{req.split}")
            run.status, run.started = "running", time.time()
            await self._stream(run, images[req.start:req.start + req.n], labels[req.start:req.start + req.n])
            run.status = "done"
        except asyncio.CancelledError:
            run.status = "cancelled"
            raise
        except Exception as exc:  # noqa: BLE001 - reported through GET /api/runs/{id}
            log.exception("run %s failed", run.id)
            run.status, run.error = "failed", str(exc)
        finally:
            run.finished = time.time()
            self.ledger.run_listeners.pop(run.id, None)

    async def _stream(self, run: Run, images: torch.Tensor, labels: torch.Tensor) -> None:
        req, ledger = run.req, self.ledger
        n, bs = len(images), req.batch_size
        window = req.window or max(4 * bs, 64)
        ids = [f"{run.id}-{req.start + i}" for i in range(n)]
        for i in range(n):
            ledger.register(ids[i], int(labels[i]), run.id)
        progress = ledger.run_listeners.setdefault(run.id, asyncio.Event())
        sent_at: dict[int, float] = {}        # index -> last send time, for undecided messages
        tries: dict[int, int] = {}
        decided: set[int] = set()  # indices with a legitimate decision
        next_i, newest = 0, -1
        last_progress = time.monotonic()

        def is_decided(i: int) -> bool:
            return ledger.legit in ledger.messages[ids[i]].outcomes

        while len(decided) + run.gave_up < n:
            while next_i < n and len(sent_at) + min(bs, n - next_i) <= max(window, bs):
                idx = list(range(next_i, min(next_i + bs, n)))
                await self._transmit(run, [ids[i] for i in idx], images[idx[0]:idx[-1] + 1])
                now = time.monotonic()
                sent_at.update({i: now for i in idx})
                run.sent += len(idx)
                next_i += len(idx)
            progress.clear()
            try:
                await asyncio.wait_for(progress.wait(), timeout=0.5)
            except TimeoutError:
                pass
            newly = [i for i in sent_at if is_decided(i)]
            for i in newly:
                del sent_at[i]
                decided.add(i)
            now = time.monotonic()
            if newly:
                last_progress = now
                newest = max(newest, *newly)
            stalled = now - last_progress > req.retry_after_s
            overdue = sorted(i for i, t in sent_at.items()
                             if stalled or (now - t > req.retry_after_s and newest > i))
            if overdue:
                await self._resend(run, overdue, ids, images, sent_at, tries)
                last_progress = time.monotonic()

    async def _resend(self, run: Run, overdue: list[int], ids: list[str], images: torch.Tensor,
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
            await self._transmit(run, [ids[i] for i in chunk], images[chunk])
            now = time.monotonic()
            sent_at.update({i: now for i in chunk})
            run.retransmits += len(chunk)
