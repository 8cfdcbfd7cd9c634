"""The links and the privacy level: the emulator's links and the transmitter's t*, read and changed live.

``/api/links`` is the resource; ``/api/channel``, its name until this release, answers the same and is deprecated
(it will be removed in the next release): "channel" also named the radio channel and the gRPC connection.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from control_panel import links
from control_panel.deps import Authorized, Panel
from control_panel.errors import Conflict
from diffsem.config import link_schema
from protos.diffsem.v1 import common_pb2
from services_common.client import SHORT_DEADLINE_S

router = APIRouter(tags=["links"])
PUT_RESPONSES: dict[int | str, dict[str, Any]] = {404: {"description": "unknown link name"},
                                                  409: {"description": "a privacy sweep owns t*"},
                                                  422: {"description": "a setting out of range or malformed"}}


@router.get("/api/links")
async def get_links(state: Panel) -> dict[str, Any]:
    """Every link's settings, state and counters, and the transmitter's privacy level and CSI."""
    await state.link_states()
    tx = await state.tx.call("GetState", common_pb2.InfoRequest(), SHORT_DEADLINE_S)
    return {"links": state.last_links, "t_star": tx.t_star if tx.HasField("t_star") else None, "a": tx.a,
            "sigma_c2_feedback": tx.sigma_c2_feedback, "num_train_timesteps": tx.num_train_timesteps,
            "model_id": tx.model_id}


@router.put("/api/links", dependencies=Authorized, responses=PUT_RESPONSES)
async def put_links(state: Panel, patch: links.LinksPatch) -> dict[str, Any]:
    """Change links and t* live. Each link's settings are ``diffsem.v1.LinkSettings`` in protobuf's JSON form
    (e.g. ``{"snr_db": 5, "fading": "rayleigh"}``; traces as ``{"trace": {"points": [{"t_s": 0, "snr_db": 3}]}}``,
    ``{"trace": {"csv": "t_s,snr_db\\n0,3\\n"}}`` or ``{"trace": {"name": "..."}}``); the settings, their units and
    bounds are listed by ``GET /api/links/schema``. The emulator and the transmitter both check the whole change
    before either applies it: a refused change applies nothing."""
    owner = state.sweeps.owner_of_t_star()
    if owner is not None and patch.changes_t_star():
        raise Conflict(f"privacy sweep {owner} is stepping t*; wait for it or cancel it (DELETE /api/sweeps/{owner})")
    await links.apply(state.emu, state.tx, patch)
    return await get_links(state)


@router.get("/api/links/schema")
async def get_link_schema() -> list[dict[str, Any]]:
    """Every link setting: its meaning, default, unit and bound (``min``/``max``, ``open_min``) or ``choices``, and
    ``scope`` (flat, ofdm, live or all), as the core's ``diffsem.config.LinkConfig`` declares them."""
    return link_schema()


@router.get("/api/channel", deprecated=True)
async def get_channel(state: Panel) -> dict[str, Any]:
    """Deprecated name of ``GET /api/links`` (removed in the next release)."""
    return await get_links(state)


@router.put("/api/channel", dependencies=Authorized, responses=PUT_RESPONSES, deprecated=True)
async def put_channel(state: Panel, patch: links.LinksPatch) -> dict[str, Any]:
    """Deprecated name of ``PUT /api/links`` (removed in the next release)."""
    return await put_links(state, patch)
