"""Frames <-> tensors, and every listener's view of a batch of received frames.

The maths is the core's: :func:`diffsem.pipeline.listener_view` turns a received latent, the frame's public
header and the listener's own noise variance into z_t at abar_eff; for keyed self-noise the key holder uses
:func:`diffsem.pipeline.keyed_listener_view` instead. On an ofdm legitimate link the header carries the
transmitter's quantised CSI, one code per complex symbol, from which :func:`diffsem.pipeline.header_from_csi`
rebuilds sigma_self^2 per real dim, and an ofdm link delivers its noise per RE, so the view is per dim with the
listener's deep-fade policy (docs/design.md §3, per-RE self-noise). This module only unpacks messages.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np
import torch

from diffsem.phy import CsiFeedback
from diffsem.pipeline import KeyedInfo, PublicHeader, header_from_csi, keyed_listener_view, listener_view
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.errors import BadRequest
from services_common.tensors import to_torch

FLOAT32 = (common_pb2.DTYPE_FLOAT32,)


def header_to_proto(header: PublicHeader, i: int, model_id: str, send_time: float,
                    keyed: KeyedInfo | None = None) -> frame_pb2.PublicHeader:
    """Frame ``i`` of a batch's public header (sigma_self2 and the keyed nonce are per frame; with per-RE CSI the
    header carries its codes, one per complex symbol, and sigma_self2 holds their self-noise's mean)."""
    s2 = header.sigma_self2[i] if header.sigma_self2.dim() == 2 else header.sigma_self2.reshape(-1)[i]
    msg = frame_pb2.PublicHeader(model_id=model_id, a=float(header.a), sigma_self2=float(s2.mean()),
                                 send_time=send_time)
    if header.csi is not None:
        msg.csi = header.csi.symbol_codes()[i].numpy().tobytes()
    if header.t_star is not None:
        msg.t_star = int(header.t_star)
    if keyed is not None:
        msg.key_nonce, msg.key_check = keyed.nonces[i], keyed.check
    return msg


def csi_of(rows: list[bytes], k: int, what: str = "CSI") -> CsiFeedback:
    """Per-symbol CSI codes from the wire (one bytes row of k/2 codes per frame) as the core's feedback;
    BadRequest naming ``what`` when a row is not k/2 bytes long."""
    bad = [len(r) for r in rows if len(r) != k // 2]
    if bad:
        raise BadRequest(f"{what}: {bad[0]} codes in a frame; one per complex symbol, k/2 = {k // 2}, expected")
    codes = torch.frombuffer(bytearray(b"".join(rows)), dtype=torch.uint8).reshape(len(rows), k // 2)
    return CsiFeedback.per_symbol(codes)


def symbols_of(frame: frame_pb2.Frame, k: int | None = None, what: str = "frame") -> torch.Tensor:
    """A frame's symbols as float32 (k,); BadRequest on a wrong shape, dtype or non-finite values."""
    x = to_torch(frame.symbols, f"{what} {frame.message_id or frame.seq} symbols", FLOAT32, (k,))
    if not torch.isfinite(x).all():
        raise BadRequest(f"{what} {frame.message_id or frame.seq}: symbols contain NaN or inf")
    return x


def symbols_matrix(frames: list[frame_pb2.Frame], k: int | None = None, what: str = "frame") -> torch.Tensor:
    """The frames' symbols as float32 (B, k): :func:`symbols_of` of each, stacked, but converted and checked for
    NaN or inf in one go (the per-frame hot path of the emulator's ``Send`` and of every listener's batch). ``k``:
    the length every frame must have (None: the first frame's). BadRequest as :func:`symbols_of` gives it for the
    first bad frame, or naming the lengths when the frames' lengths differ."""
    first = frames[0].symbols.shape
    n = k if k is not None else (first[0] if len(first) == 1 else -1)
    if n < 0 or not all(f.symbols.dtype == common_pb2.DTYPE_FLOAT32 and len(f.symbols.shape) == 1
                        and f.symbols.shape[0] == n and len(f.symbols.data) == 4 * n for f in frames):
        lengths = sorted({len(symbols_of(f, k, what)) for f in frames})  # raises for a malformed frame
        raise BadRequest(f"{what}s in one batch must share one length; got lengths {lengths[:5]}")
    x = torch.from_numpy(np.frombuffer(b"".join(f.symbols.data for f in frames), dtype="<f4")
                         .reshape(len(frames), n).astype(np.float32))  # one copy, native byte order
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        f = frames[int((~finite).nonzero()[0, 0])]
        raise BadRequest(f"{what} {f.message_id or f.seq}: symbols contain NaN or inf")
    return x


@dataclass
class ReceivedBatch:
    """A listener's batch. y: (B, k) received latents; sigma2: (B,) own noise per real dim;
    z: (B, k) normalised latents z_t; abar_eff: (B,) float32; headers: the frames' public headers as received;
    groups: the frames that share a header, as (their indices, the core's :class:`~diffsem.pipeline.PublicHeader`
    of them: sigma_self2 per frame or per real dim, the CSI codes, the frames' public ``seq``), the header the view was
    computed with."""

    y: torch.Tensor
    sigma2: torch.Tensor
    z: torch.Tensor
    abar_eff: torch.Tensor
    headers: list[frame_pb2.PublicHeader]
    groups: list[tuple[list[int], PublicHeader]]


def _check_frame(rf: frame_pb2.ReceivedFrame, k: int, model_id: str | None) -> None:
    """BadRequest naming the frame when it cannot be viewed (dropped, another model, bad variances or header)."""
    mid = rf.frame.message_id
    if rf.dropped:
        raise BadRequest(f"frame {mid}: dropped on the link, it has no symbols")
    if model_id and rf.frame.header.model_id and rf.frame.header.model_id != model_id:
        raise BadRequest(f"frame {mid}: sent with model {rf.frame.header.model_id!r}, this listener runs {model_id!r}")
    if not (rf.sigma2 >= 0 and rf.sigma2 < float("inf")):
        raise BadRequest(f"frame {mid}: sigma2={rf.sigma2} must be a finite variance >= 0")
    if rf.sigma2_re and (len(rf.sigma2_re) != k // 2 or not all(0 <= v < float("inf") for v in rf.sigma2_re)):
        raise BadRequest(f"frame {mid}: sigma2_re needs k/2 = {k // 2} finite variances >= 0, "
                         f"got {len(rf.sigma2_re)} values")
    h = rf.frame.header
    if not (0.0 < h.a <= 1.0) or not (0.0 <= h.sigma_self2 <= 1.0):
        raise BadRequest(f"frame {mid}: header a={h.a}, sigma_self2={h.sigma_self2} must lie in (0, 1] and [0, 1]")
    if h.key_check and len(h.key_nonce) != 16:
        raise BadRequest(f"frame {mid}: keyed header needs a 16-byte nonce, got {len(h.key_nonce)}")
    if h.csi and len(h.csi) != k // 2:
        raise BadRequest(f"frame {mid}: header csi needs k/2 = {k // 2} codes, got {len(h.csi)}")


def _own_noise(frames: list[frame_pb2.ReceivedFrame], k: int) -> torch.Tensor:
    """The listeners' own noise per real dim (B, k): per RE where the link gave it, else the frame's sigma2."""
    rows = [torch.tensor(list(rf.sigma2_re), dtype=torch.float32).repeat_interleave(2) if rf.sigma2_re
            else torch.full((k,), rf.sigma2, dtype=torch.float32) for rf in frames]
    return torch.stack(rows)


def public_header(frames: list[frame_pb2.Frame], t_star: int | None, a: float, k: int) -> PublicHeader:
    """The core's header of frames that share t*, a and whether they carry CSI codes, as every reader of the public
    header rebuilds it (a listener, and the emulator for a multi-antenna Send's null-space power): with codes,
    sigma_self^2 per real dim (B, k) from them (:func:`diffsem.pipeline.header_from_csi`), else per frame (B,); with
    the frames' public ``seq``, on which an attack such as the noise replay aligns. BadRequest for malformed codes."""
    seq = torch.tensor([f.seq for f in frames], dtype=torch.int64)
    if frames[0].header.csi:
        return replace(header_from_csi(t_star, a, csi_of([f.header.csi for f in frames], k, "header csi")), seq=seq)
    # float64, as the transmitter computed it (the wire's double holds it exactly): the view is then the offline one
    return PublicHeader(t_star, a, torch.tensor([f.header.sigma_self2 for f in frames], dtype=torch.float64),
                        seq=seq)


def received_batch(frames: list[frame_pb2.ReceivedFrame], k: int, model_id: str | None = None,
                   key: bytes | None = None, key_holder: bool = False, policy: str = "mean") -> ReceivedBatch:
    """Stack delivered (not dropped) frames and compute each one's view with the core's ``listener_view``.

    Frames with different public headers (t* changed mid-stream, a link switched between flat and ofdm) are grouped
    by (t*, a, keyed, CSI codes or not). A ``key_holder`` (the legitimate receiver) removes keyed self-noise with
    ``key``; a missing or wrong key raises :class:`diffsem.keyed.KeyedNoiseError`. Anyone else sees keyed
    self-noise as the random noise it looks like. ``policy``: the deep-fade policy of per-dim levels
    (:data:`diffsem.pipeline.DEEP_FADE_POLICIES`).
    """
    if not frames:
        raise BadRequest("no frames to decode")
    for rf in frames:
        _check_frame(rf, k, model_id)
    y = symbols_matrix([rf.frame for rf in frames], k, "received frame")
    sigma2 = torch.tensor([rf.sigma2 for rf in frames], dtype=torch.float32)
    z = torch.empty_like(y)
    abar_eff = torch.empty(len(frames), dtype=torch.float32)
    groups: dict[tuple[int | None, float, str, bool], list[int]] = defaultdict(list)
    cores: list[tuple[list[int], PublicHeader]] = []
    for i, rf in enumerate(frames):
        h = rf.frame.header
        groups[(h.t_star if h.HasField("t_star") else None, h.a, h.key_check if key_holder else "",
                bool(h.csi))].append(i)
    for (t_star, a, check, _), idx in groups.items():
        group = [frames[i] for i in idx]
        header = public_header([rf.frame for rf in group], t_star, a, k)
        cores.append((idx, header))
        per_dim = header.csi is not None or any(rf.sigma2_re for rf in group)
        own = _own_noise(group, k) if per_dim else sigma2[idx]
        if check:
            info = KeyedInfo([rf.frame.header.key_nonce for rf in group], check)
            z_g, level = keyed_listener_view(y[idx], header, own, info, key, policy)
        else:
            z_g, level = listener_view(y[idx], header, own, policy)
        z[idx] = z_g
        abar_eff[idx] = level
    return ReceivedBatch(y, sigma2, z, abar_eff, [rf.frame.header for rf in frames], cores)


def antenna_rows(x: torch.Tensor) -> torch.Tensor:
    """A multi-antenna transmitter's signals x (B, k/2, n_tx) complex as the symbols its frames carry: (B, k n_tx)
    float32, channel use by channel use, each antenna's (re, im) (docs/design.md §5, live antennas)."""
    return torch.view_as_real(x.to(torch.complex64)).reshape(x.shape[0], -1)


def antenna_signals(rows: torch.Tensor, n_tx: int) -> torch.Tensor:
    """The inverse of :func:`antenna_rows`: rows (B, k n_tx) float32 -> (B, k/2, n_tx) complex64."""
    b, length = rows.shape
    return torch.view_as_complex(rows.to(torch.float32).reshape(b, length // (2 * n_tx), n_tx, 2).contiguous())
