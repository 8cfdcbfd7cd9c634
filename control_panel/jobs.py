"""What runs and sweeps share: how a background job ends, and cancelling jobs in flight."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Job(Protocol):
    id: str
    status: str
    error: str | None
    task: asyncio.Task[None] | None
    created: float

    def doc(self) -> dict[str, Any]: ...


async def track(job: Job, body: Awaitable[None], what: str) -> None:
    """Await ``body`` and record on ``job`` how it ended: ``done``, ``cancelled`` (re-raised) or ``failed`` with the
    error, which its ``GET`` then reports."""
    try:
        await body
        job.status = "done"
    except asyncio.CancelledError:
        job.status = "cancelled"
        raise
    except Exception as exc:  # noqa: BLE001 - reported through the job's GET
        log.exception("%s %s failed", what, job.id)
        job.status, job.error = "failed", str(exc)


def accepted(job: Job, collection: str) -> dict[str, Any]:
    """The 202 body of a job just started: its id, where to poll it, its status."""
    return {"id": job.id, "url": f"/api/{collection}/{job.id}", "status": job.status}


def save(store: Any, kind: str, job: Job) -> None:
    """Write the job's record (``control_panel.store.Store``) in one transaction."""
    with store.transaction():
        store.save_doc(kind, job.id, job.doc(), job.created)


def cancel(active: dict[str, Any], job_id: str) -> bool:
    """Cancel the job ``job_id`` if it is in flight; False when it is not."""
    job = active.get(job_id)
    if job is None or job.task is None:
        return False
    job.task.cancel()
    return True


def cancel_all(jobs: Iterable[Job]) -> None:
    for job in jobs:
        if job.task is not None:
            job.task.cancel()
