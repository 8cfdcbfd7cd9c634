"""The live privacy sweep: step t* over a list while test images flow, and record every listener's accuracy.

Each step sets the transmitter's t* and runs ``n`` test images (an ordinary run, listed under ``runs``), then
records the receiver's and each eavesdropper's accuracy at that t*: the paper's accuracy-versus-privacy figure,
measured on the running stack. While a sweep runs it owns t* (``PUT /api/links`` may not change it: 409), it
holds one run slot, and at the end, however it ends, t* is set back to what it was before.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from pydantic import Field

from control_panel.errors import Conflict, Missing, Upstream, UpstreamError
from control_panel.jobs import cancel, cancel_all, save, track
from control_panel.ledger import Ledger
from control_panel.runs import RunManager, RunRequest
from control_panel.store import Store
from protos.diffsem.v1 import common_pb2, transmitter_pb2
from services_common.client import SHORT_DEADLINE_S

log = logging.getLogger(__name__)
KIND = "sweep"


class SweepRequest(RunRequest):
    """POST /api/sweeps body: the t* levels, and the run every level gets (``n`` images from ``start``)."""

    t_stars: list[int] = Field(min_length=1, max_length=32, description="privacy levels t*, each in [0, T)")
    n: int = Field(200, ge=1, le=70_000, description="images per t* level; start + n <= the split's size")

    def run_request(self) -> RunRequest:
        return RunRequest(**self.model_dump(exclude={"t_stars"}))


@dataclass
class Sweep:
    id: str
    t_stars: list[int]
    request: dict[str, Any]
    status: str = "running"
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None
    current: int | None = None  # the t* being measured
    points: list[dict[str, Any]] = field(default_factory=list)  # per finished step: t_star, a, run, accuracy, roles
    restored_t_star: int | None = None
    task: asyncio.Task | None = field(default=None, repr=False)

    def doc(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "task"}


class SweepManager:
    def __init__(self, store: Store, ledger: Ledger, runs: RunManager, tx: Upstream):
        self.store, self.ledger, self.runs, self.tx = store, ledger, runs, tx
        self.active: dict[str, Sweep] = {}
        store.interrupt(KIND, "the control panel stopped while this sweep was in flight")

    def owner_of_t_star(self) -> str | None:
        return next(iter(self.active), None)

    async def start(self, req: SweepRequest) -> Sweep:
        if self.active:
            raise Conflict(f"privacy sweep {self.owner_of_t_star()} is running; one sweep at a time "
                           "(wait for it, or DELETE /api/sweeps/{id})")
        await self.runs.check(req.run_request())
        for t in req.t_stars:  # every level is checked by the transmitter before anything changes
            await self.tx.call("Configure", transmitter_pb2.TransmitterConfig(t_star=t, validate_only=True),
                               timeout=SHORT_DEADLINE_S)
        self.runs.reserve()
        sweep = Sweep(uuid.uuid4().hex[:12], list(req.t_stars), req.model_dump())
        self.active[sweep.id] = sweep
        self._save(sweep)
        sweep.task = asyncio.create_task(self._execute(sweep, req.run_request()))
        return sweep

    def get(self, sweep_id: str) -> dict[str, Any] | None:
        if sweep_id in self.active:
            return self.active[sweep_id].doc()
        return self.store.load_doc(KIND, sweep_id)

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        return [self.active[d["id"]].doc() if d["id"] in self.active else d
                for d in self.store.list_docs(KIND, limit, offset)]

    def delete(self, sweep_id: str) -> str:
        """Cancel a sweep in flight ("cancelling"), or delete a finished one's record ("deleted")."""
        if cancel(self.active, sweep_id):
            return "cancelling"
        with self.store.transaction():
            if not self.store.delete_doc(KIND, sweep_id):
                raise Missing(f"no sweep {sweep_id!r}")
        return "deleted"

    def stop(self) -> None:
        cancel_all(self.active.values())

    def _save(self, sweep: Sweep) -> None:
        save(self.store, KIND, sweep)

    async def _steps(self, sweep: Sweep, run_req: RunRequest) -> None:
        for t in sweep.t_stars:
            await self._step(sweep, run_req, t)

    async def _execute(self, sweep: Sweep, run_req: RunRequest) -> None:
        before = await self.tx.call("GetState", common_pb2.InfoRequest(), timeout=SHORT_DEADLINE_S)
        sweep.restored_t_star = before.t_star if before.HasField("t_star") else None
        try:
            await track(sweep, self._steps(sweep, run_req), "sweep")
        finally:
            sweep.current, sweep.finished = None, time.time()
            self.runs.reserved -= 1
            self.active.pop(sweep.id, None)
            restore = (transmitter_pb2.TransmitterConfig(disable_self_noise=True) if sweep.restored_t_star is None
                       else transmitter_pb2.TransmitterConfig(t_star=sweep.restored_t_star))
            try:
                await self.tx.call("Configure", restore, timeout=SHORT_DEADLINE_S)
            except UpstreamError as exc:
                log.error("sweep %s could not set t* back to %s: %s", sweep.id, sweep.restored_t_star, exc)
                sweep.error = f"{sweep.error or ''} (t* not restored to {sweep.restored_t_star}: {exc})".strip()
            self._save(sweep)

    async def _step(self, sweep: Sweep, run_req: RunRequest, t_star: int) -> None:
        state = await self.tx.call("Configure", transmitter_pb2.TransmitterConfig(t_star=t_star),
                                   timeout=SHORT_DEADLINE_S)
        sweep.current = t_star
        self._save(sweep)
        run = await self.runs.start(run_req, sweep=sweep.id)
        assert run.task is not None
        try:
            await asyncio.wait({run.task})
        except asyncio.CancelledError:
            run.task.cancel()
            raise
        if run.status != "done":
            raise RuntimeError(f"the run at t*={t_star} ({run.id}) ended {run.status}: {run.error}")
        tallies = self.ledger.tallies.of(run.id)
        sweep.points.append({"t_star": t_star, "a": state.a, "run": run.id, "n": run.req.n,
                             "accuracy": {name: t.accuracy for name, t in tallies.items()},
                             "roles": {name: t.role for name, t in tallies.items()}, "missed": run.missed})
        self._save(sweep)
