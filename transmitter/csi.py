"""The transmitter's CSI of the legitimate link: what shapes each frame's self-noise (docs/design.md §3 and §5).

Before each batch of B frames the emulator's ``Feedback`` draws the legitimate link's channel of those frames (the
core's :meth:`diffsem.phy.Link.feedback`, on every PHY) and answers its CSI: N0/|h|^2 of each frame on a flat link,
the delayed, quantised codes of each RE on an ofdm link. The batch's ``Send`` then goes over exactly that channel,
as the offline frame path draws it, so the self-noise is always shaped for the fade the frame meets.

Feedback given directly (``Transmitter.Feedback``): sigma^2 per RE (k/2 values, quantised as the emulator's) or one
for the frame, pinned until cleared. A malformed one is refused and the previous CSI stays.

The result is the core's feedback type (:data:`diffsem.pipeline.Feedback`): a float or a (B,) tensor, or a
:class:`diffsem.phy.CsiFeedback` of (B, k/2) codes with one unit per symbol; on multi-antenna links (n_tx > 1) an
:class:`AntennaCsi`, the legitimate receiver's channel matrix per frame (flat) or per RE (ofdm), with the power split
the operator set (docs/design.md §5, live antennas). That CSI is checked at the core's door
(:func:`diffsem.phy.nullspace.check_csi`, when the transmitter precodes): a malformed one sends nothing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import grpc
import torch

from diffsem.config import build
from diffsem.phy import CsiFeedback, quantise_csi
from diffsem.phy.nullspace import NullSpaceConfig
from diffsem.pipeline import Feedback
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import transmitter_pb2 as pb
from services_common.client import DEADLINE_S
from services_common.errors import BadRequest, NotReady
from services_common.frames import csi_of


def pinned_feedback(msg: pb.CsiFeedback, k: int) -> torch.Tensor:
    """Feedback given directly as sigma^2 per symbol (k/2,) or per frame (1,); BadRequest when malformed."""
    values = list(msg.sigma2)
    if len(values) not in (1, k // 2):
        raise BadRequest(f"CSI feedback has {len(values)} values; give k/2 = {k // 2} (one per RE) or 1 (the frame)")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise BadRequest("CSI feedback values must be finite noise levels sigma^2 >= 0 (linear, per real dim)")
    return torch.tensor(values, dtype=torch.float64)


@dataclass
class AntennaCsi:
    """A multi-antenna legitimate link's fed-back CSI of B frames: csi (B, M, n_rx, n_tx) complex64 (M = 1 on a flat
    link, k/2 on an ofdm link: one matrix per RE), the noise n0 per complex symbol, the estimate's error variance per
    entry (a float, or (M,) float32 per RE for LS on ofdm), the power split, and the mean beam-normalised level (the
    emulator's ``sigma_c2``, for the state)."""

    csi: torch.Tensor
    n0: float
    csi_error: float | torch.Tensor
    split: NullSpaceConfig
    n_tx: int
    level: float


def antenna_csi(reply: ch_pb.FeedbackReply, b: int) -> AntennaCsi:
    """An ``antennas`` FeedbackReply for b frames as :class:`AntennaCsi`. The values are shaped (B, M, n_rx, n_tx)
    with M = ``channel_uses`` when their count allows it (the core's :func:`~diffsem.phy.nullspace.check_csi` then
    checks shape, M and values); counts that fit no such shape, and error variances that are not finite and >= 0, are
    refused here."""
    n_tx, n_rx, m = reply.n_tx, reply.n_rx, reply.channel_uses or 1
    want = 2 * b * m * max(n_rx, 1) * n_tx
    if len(reply.csi) != want or n_rx < 1:
        raise BadRequest(f"the emulator's CSI feedback has {len(reply.csi)} values for {b} frames of n_rx={n_rx} x "
                         f"n_tx={n_tx} on {m} channel uses each; expected 2 x frames x channel_uses x n_rx x n_tx "
                         f"(re, im) = {want}")
    per_re = list(reply.csi_error_re)
    if per_re and (m == 1 or len(per_re) != m):
        raise BadRequest(f"the emulator's CSI feedback has {len(per_re)} per-RE error variances for {m} channel "
                         f"uses; expected one per channel use on a per-RE link ({m} > 1), else none")
    if not all(math.isfinite(v) and v >= 0 for v in (*per_re, reply.csi_error, reply.n0)):
        raise BadRequest("the emulator's CSI feedback has an error variance or n0 that is not finite and >= 0")
    values = torch.tensor(reply.csi, dtype=torch.float32).reshape(b, m, n_rx, n_tx, 2)
    split = build(NullSpaceConfig, beam_fraction=reply.beam_fraction, null_space=reply.null_space)
    error = torch.tensor(per_re, dtype=torch.float32) if per_re else reply.csi_error
    return AntennaCsi(torch.view_as_complex(values), reply.n0, error, split,  # type: ignore[arg-type]
                      n_tx, reply.sigma_c2)


class CsiSource:
    """The legitimate link's CSI for the transmitter. Not thread-safe: the transmitter calls it under its lock."""

    def __init__(self, emulator: ch_grpc.ChannelEmulatorStub, legit_link: str, k: int):
        self.emulator, self.legit_link, self.k = emulator, legit_link, k
        self.pinned: torch.Tensor | None = None
        self.sigma_c2, self.values = 0.0, 1  # the last CSI used: its mean level and how many levels a frame had
        self._at = -math.inf  # monotonic time of the last CSI

    @property
    def age_s(self) -> float:
        return time.monotonic() - self._at

    def pin(self, msg: pb.CsiFeedback) -> None:
        """Apply feedback given directly (or ``clear`` it); a malformed one raises and changes nothing."""
        self.pinned = None if msg.clear else pinned_feedback(msg, self.k)

    def for_frames(self, b: int) -> Feedback | AntennaCsi:
        """The CSI that shapes the next ``b`` frames (the emulator draws their channel now)."""
        if self.pinned is not None:
            fb: Feedback = (float(self.pinned[0]) if len(self.pinned) == 1 else
                            CsiFeedback.per_symbol(quantise_csi(self.pinned).expand(b, -1).contiguous()))
        else:
            fb = self._drawn(b)
        self._at = time.monotonic()
        if isinstance(fb, AntennaCsi):
            self.sigma_c2, self.values = fb.level, fb.csi.shape[1]
        elif isinstance(fb, CsiFeedback):
            self.sigma_c2, self.values = float(fb.sigma_c2().mean()), self.k // 2
        else:
            self.sigma_c2, self.values = float(torch.as_tensor(fb, dtype=torch.float64).mean()), 1
        return fb

    def _drawn(self, b: int) -> Feedback | AntennaCsi:
        try:
            reply = self.emulator.Feedback(ch_pb.FeedbackRequest(link=self.legit_link, frames=b), timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            raise NotReady(f"channel emulator unreachable for CSI feedback: {exc.details()}") from None
        if reply.phy == "antennas":
            return antenna_csi(reply, b)
        if reply.phy == "ofdm":
            n = self.k // 2
            if len(reply.codes) != b * n:
                raise NotReady(f"the emulator's CSI feedback has {len(reply.codes)} codes for {b} frames of k/2 = {n}")
            return csi_of([reply.codes[i * n:(i + 1) * n] for i in range(b)], self.k, "emulator CSI feedback")
        if len(reply.frame_sigma_c2) != b:
            raise NotReady(f"the emulator's CSI feedback has {len(reply.frame_sigma_c2)} levels for {b} frames")
        return torch.tensor(reply.frame_sigma_c2, dtype=torch.float32)  # float32 on the wire: the core's own values
