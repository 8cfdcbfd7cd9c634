"""Images: send one (``POST /api/transmit``), read a message's results and an eavesdropper's reconstruction."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response
from PIL import Image

from control_panel.deps import Authorized, Panel
from control_panel.errors import found
from diffsem.imageio import ImageError, ImageTooLarge, load_image
from protos.diffsem.v1 import transmitter_pb2
from services_common.client import DEADLINE_S
from services_common.tensors import to_proto

router = APIRouter(tags=["images"])


def _label(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(422, f"label must be an integer from 0 to 9, got {text!r}") from None
    if not 0 <= value <= 9:
        raise HTTPException(422, f"label must be an integer from 0 to 9, got {value}")
    return value


@router.post("/api/transmit", dependencies=Authorized)
async def transmit(state: Panel,
                   file: Annotated[list[UploadFile], File(description="one PNG, JPEG or .npy image")],
                   label: Annotated[str | None, Form(description="ground truth 0-9 (kept at the panel)")] = None,
                   timeout_s: Annotated[float | None, Query(gt=0, le=120, description="wait for results")] = None,
                   ) -> dict[str, Any]:
    """Send one image; wait for the receiver's decision and each attached eavesdropper's result.

    Accepted: PNG, JPEG or NumPy .npy (recognised by content), at most 5 MiB and 4096 pixels per side (from
    the header, checked before decoding: 413 otherwise). Preprocessing to 28x28 grayscale in [0, 1]:
    transparency composited on white, luminance, inverted when the border is light (MNIST digits are
    light on black), then a 28x28 image is kept as is, any other size is cropped to its content, scaled
    to 20 px on the longer side and centred by centre of mass (MNIST's normalisation). The label, if given,
    stays at the panel and never crosses the channel. At most ``max_uploads`` uploads are in flight (429 with
    ``Retry-After`` past it).
    """
    if len(file) != 1:
        raise HTTPException(422, f"file: send exactly one image per request, got {len(file)} files")
    truth = _label(label)
    limit = state.settings.max_upload_bytes
    data = await file[0].read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is over the limit of {limit} bytes")
    try:
        pre = await asyncio.to_thread(load_image, data, limit)
    except ImageTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except ImageError as exc:
        raise HTTPException(400, str(exc)) from None
    attached = await state.attached()
    if state.settings.legit not in attached:
        raise HTTPException(503, f"the receiver is not attached to the channel emulator "
                                 f"(link {state.settings.legit!r})")
    ledger = state.ledger
    mid = uuid.uuid4().hex
    created = time.monotonic()
    pending = ledger.register(mid, truth, expected=attached)
    wait = timeout_s or state.settings.transmit_timeout_s
    try:
        reply = await state.tx.call("Transmit", transmitter_pb2.TransmitRequest(
            images=to_proto(pre.image[None]), message_ids=[mid]), DEADLINE_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(pending.done.wait(), timeout=wait)
    finally:
        ledger.pending.pop(mid, None)
    if state.settings.legit not in pending.seen:
        raise HTTPException(504, f"no decision from the receiver within {wait} s (message {mid})")
    header = reply.header
    return {**(ledger.message_json(mid) or {}), "seq": reply.seqs[0], "preprocessing": pre.info,
            "header": {"t_star": header.t_star if header.HasField("t_star") else None, "a": header.a,
                       "sigma_self2": header.sigma_self2, "sigma_c2_feedback": reply.sigma_c2_feedback},
            "elapsed_ms": round((time.monotonic() - created) * 1000, 3)}


@router.get("/api/messages/{message_id}")
async def get_message(state: Panel, message_id: str) -> dict[str, Any]:
    return found(state.ledger.message_json(message_id),
                 f"message {message_id!r} (unknown, or pruned by the retention setting)")


@router.get("/api/reconstructions/{message_id}/{listener}.png", responses={200: {"content": {"image/png": {}}}})
async def reconstruction(state: Panel, message_id: str, listener: str) -> Response:
    img = found(state.ledger.reconstructions.get((message_id, listener)),
                f"reconstruction of {message_id!r} by {listener!r}")
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return Response(buf.getvalue(), media_type="image/png")
