"""Live privacy sweeps: accuracy of every listener against t*, measured on the running stack."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control_panel.deps import Authorized, Limit, Offset, Panel
from control_panel.errors import found
from control_panel.jobs import accepted
from control_panel.sweeps import SweepRequest

router = APIRouter(tags=["sweeps"])


@router.post("/api/sweeps", status_code=202, dependencies=Authorized,
             responses={409: {"description": "a sweep is already running"}, 429: {"description": "too many runs"}})
async def start_sweep(state: Panel, req: SweepRequest) -> dict[str, Any]:
    """Step t* over ``t_stars``, running ``n`` test images at each level; poll ``GET /api/sweeps/{id}``.

    Every level is checked by the transmitter first (422 for a t* outside [0, T)); t* is set back at the end."""
    return accepted(await state.sweeps.start(req), "sweeps")


@router.get("/api/sweeps")
async def list_sweeps(state: Panel, limit: Limit = 20, offset: Offset = 0) -> list[dict[str, Any]]:
    """The newest sweeps first, ``limit`` at a time."""
    return state.sweeps.list(limit, offset)


@router.get("/api/sweeps/{sweep_id}")
async def get_sweep(state: Panel, sweep_id: str) -> dict[str, Any]:
    """Status, the t* being measured, and per finished level: t*, a, the run's id and each listener's accuracy."""
    return found(state.sweeps.get(sweep_id), f"sweep {sweep_id!r}")


@router.delete("/api/sweeps/{sweep_id}", dependencies=Authorized)
async def delete_sweep(state: Panel, sweep_id: str) -> dict[str, Any]:
    """Cancel a sweep in flight (t* is set back), or delete a finished one's record."""
    return {"id": sweep_id, "status": state.sweeps.delete(sweep_id)}
