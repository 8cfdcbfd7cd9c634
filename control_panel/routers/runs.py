"""Test-set runs: start, watch, export the decisions, cancel or delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from control_panel.deps import Authorized, Limit, Offset, Panel
from control_panel.errors import found
from control_panel.export import decisions_json, on_loop
from control_panel.jobs import accepted
from control_panel.runs import RunRequest

router = APIRouter(tags=["runs"])


@router.post("/api/runs", status_code=202, dependencies=Authorized,
             responses={422: {"description": "bad data set, start or n"}, 429: {"description": "too many runs"},
                        503: {"description": "data set missing on the panel, or the stack unreachable"}})
async def start_run(state: Panel, req: RunRequest) -> dict[str, Any]:
    """Stream a slice of a test set through the stack; poll ``GET /api/runs/{id}`` until its status is one of
    done, failed, cancelled or interrupted. ``done`` means every listener attached at the start has reported
    each frame, or has been counted as having missed them after ``report_deadline_s`` of silence."""
    return accepted(await state.runs.start(req), "runs")


@router.get("/api/runs")
async def list_runs(state: Panel, limit: Limit = 50, offset: Offset = 0) -> list[dict[str, Any]]:
    """The newest runs first, ``limit`` at a time."""
    return state.runs.list(limit, offset)


@router.get("/api/runs/{run_id}")
async def get_run(state: Panel, run_id: str) -> dict[str, Any]:
    return state.runs.as_json(found(state.runs.get(run_id), f"run {run_id!r}"))


@router.get("/api/runs/{run_id}/decisions", response_model=None,
            responses={200: {"content": {"application/json": {}}}})
async def run_decisions(state: Panel, run_id: str) -> StreamingResponse:
    """Per image of the run, in order: ground truth and each listener's label (null: none, lost or pruned).

    ``{"id", "start", "truth": [...], "listeners": {name: [...]}}``, streamed from the database."""
    run = found(state.runs.get(run_id), f"run {run_id!r}")
    chunks = decisions_json(state.store.path, state.store.conn, run.id, run.req.start, run.req.n)
    return StreamingResponse(on_loop(chunks), media_type="application/json")


@router.delete("/api/runs/{run_id}", dependencies=Authorized)
async def delete_run(state: Panel, run_id: str) -> dict[str, Any]:
    """Cancel a run in flight (``cancelling``), or delete a finished one with its messages (``deleted``)."""
    return {"id": run_id, "status": await state.runs.delete(run_id)}
