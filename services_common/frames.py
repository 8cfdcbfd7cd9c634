"""Frames <-> tensors, and every listener's view of a batch of received frames.

The maths is the core's: :func:`diffsem.pipeline.listener_view` turns a received latent, the frame's public
header and the listener's own noise variance into z_t at abar_eff; for keyed self-noise the key holder uses
:func:`diffsem.pipeline.keyed_listener_view` instead. This module only unpacks messages.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from diffsem.pipeline import KeyedInfo, PublicHeader, keyed_listener_view, listener_view
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.errors import BadRequest
from services_common.tensors import to_torch

FLOAT32 = (common_pb2.DTYPE_FLOAT32,)


def header_to_proto(header: PublicHeader, i: int, model_id: str, send_time: float,
                    keyed: KeyedInfo | None = None) -> frame_pb2.PublicHeader:
    """Frame ``i`` of a batch's public header (sigma_self2 and the keyed nonce are per frame)."""
    msg = frame_pb2.PublicHeader(model_id=model_id, a=float(header.a),
                                 sigma_self2=float(header.sigma_self2.reshape(-1)[i]), send_time=send_time)
    if header.t_star is not None:
        msg.t_star = int(header.t_star)
    if keyed is not None:
        msg.key_nonce, msg.key_check = keyed.nonces[i], keyed.check
    return msg


def symbols_of(frame: frame_pb2.Frame, k: int | None = None, what: str = "frame") -> torch.Tensor:
    """A frame's symbols as float32 (k,); BadRequest on a wrong shape, dtype or non-finite values."""
    x = to_torch(frame.symbols, f"{what} {frame.message_id or frame.seq} symbols", FLOAT32, (k,))
    if not torch.isfinite(x).all():
        raise BadRequest(f"{what} {frame.message_id or frame.seq}: symbols contain NaN or inf")
    return x


@dataclass
class ReceivedBatch:
    """A listener's batch. y: (B, k) received latents; sigma2: (B,) own noise per real dim;
    z: (B, k) normalised latents z_t; abar_eff: (B,) float32; headers: the frames' public headers."""

    y: torch.Tensor
    sigma2: torch.Tensor
    z: torch.Tensor
    abar_eff: torch.Tensor
    headers: list[frame_pb2.PublicHeader]


def received_batch(frames: list[frame_pb2.ReceivedFrame], k: int, model_id: str | None = None,
                   key: bytes | None = None, key_holder: bool = False) -> ReceivedBatch:
    """Stack delivered (not dropped) frames and compute each one's view with the core's ``listener_view``.

    Frames with different public headers (t* changed mid-stream) are grouped by (t*, a, keyed). A ``key_holder``
    (the legitimate receiver) removes keyed self-noise with ``key``; a missing or wrong key raises
    :class:`diffsem.keyed.KeyedNoiseError`. Anyone else sees keyed self-noise as the random noise it looks like.
    """
    if not frames:
        raise BadRequest("no frames to decode")
    for rf in frames:
        if rf.dropped:
            raise BadRequest(f"frame {rf.frame.message_id}: dropped on the link, it has no symbols")
        if model_id and rf.frame.header.model_id and rf.frame.header.model_id != model_id:
            raise BadRequest(f"frame {rf.frame.message_id}: sent with model {rf.frame.header.model_id!r}, "
                             f"this listener runs {model_id!r}")
        if not (rf.sigma2 >= 0 and rf.sigma2 < float("inf")):
            raise BadRequest(f"frame {rf.frame.message_id}: sigma2={rf.sigma2} must be a finite variance >= 0")
        h = rf.frame.header
        if not (0.0 < h.a <= 1.0) or not (0.0 <= h.sigma_self2 <= 1.0):
            raise BadRequest(f"frame {rf.frame.message_id}: header a={h.a}, sigma_self2={h.sigma_self2} "
                             "must lie in (0, 1] and [0, 1]")
    y = torch.stack([symbols_of(rf.frame, k, "received frame") for rf in frames])
    sigma2 = torch.tensor([rf.sigma2 for rf in frames], dtype=torch.float32)
    z = torch.empty_like(y)
    abar_eff = torch.empty(len(frames), dtype=torch.float32)
    groups: dict[tuple[int | None, float, str], list[int]] = defaultdict(list)
    for i, rf in enumerate(frames):
        h = rf.frame.header
        if h.key_check and len(h.key_nonce) != 16:
            raise BadRequest(f"frame {rf.frame.message_id}: keyed header needs a 16-byte nonce, got {len(h.key_nonce)}")
        groups[(h.t_star if h.HasField("t_star") else None, h.a, h.key_check if key_holder else "")].append(i)
    for (t_star, a, check), idx in groups.items():
        s2_self = torch.tensor([frames[i].frame.header.sigma_self2 for i in idx], dtype=torch.float32)
        header = PublicHeader(t_star, a, s2_self)
        if check:
            info = KeyedInfo([frames[i].frame.header.key_nonce for i in idx], check)
            z_g, level = keyed_listener_view(y[idx], header, sigma2[idx], info, key)
        else:
            z_g, level = listener_view(y[idx], header, sigma2[idx])
        z[idx] = z_g
        abar_eff[idx] = level
    return ReceivedBatch(y, sigma2, z, abar_eff, [rf.frame.header for rf in frames])
