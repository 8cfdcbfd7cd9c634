"""Channel and privacy: the emulator's links and the transmitter's t*, read and changed live."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from control_panel import channel
from control_panel.deps import Authorized, Panel
from protos.diffsem.v1 import common_pb2
from services_common.client import SHORT_DEADLINE_S

router = APIRouter(tags=["channel"])


@router.get("/api/channel")
async def get_channel(state: Panel) -> dict[str, Any]:
    await state.channel_state()
    tx = await state.tx.call("GetState", common_pb2.InfoRequest(), SHORT_DEADLINE_S)
    return {"links": state.last_links, "t_star": tx.t_star if tx.HasField("t_star") else None, "a": tx.a,
            "sigma_c2_feedback": tx.sigma_c2_feedback, "num_train_timesteps": tx.num_train_timesteps,
            "model_id": tx.model_id}


@router.put("/api/channel", dependencies=Authorized,
            responses={404: {"description": "unknown link name"}, 409: {"description": "a privacy sweep owns t*"},
                       422: {"description": "a setting out of range or malformed"}})
async def put_channel(state: Panel, patch: channel.ChannelPatch) -> dict[str, Any]:
    """Change links and t* live. Each link's settings are ``diffsem.v1.LinkSettings`` in protobuf's JSON form
    (e.g. ``{"snr_db": 5, "fading": "rayleigh"}``; traces as ``{"trace": {"points": [{"t_s": 0, "snr_db": 3}]}}``,
    ``{"trace": {"csv": "t_s,snr_db\\n0,3\\n"}}`` or ``{"trace": {"name": "..."}}``). The emulator and the
    transmitter both check the whole change before either applies it: a refused change applies nothing."""
    owner = state.sweeps.owner_of_t_star()
    if owner is not None and patch.changes_t_star():
        raise HTTPException(409, f"privacy sweep {owner} is stepping t*; wait for it or cancel it "
                                 f"(DELETE /api/sweeps/{owner})")
    await channel.apply(state.emu, state.tx, patch)
    return await get_channel(state)
