"""The transmitter's CSI of the legitimate link: what shapes each frame's self-noise (docs/design.md §3 and §5).

- ``flat`` link: sigma_c^2 = N0/|h|^2 from the emulator's ``GetState``, cached ``max_age_s`` (an SNR trace is
  followed within that time).
- ``ofdm`` link: before each batch of B frames the emulator's ``Feedback`` draws the channel of those frames and
  returns the delayed, quantised CSI of each (one uint8 code per complex symbol); the batch's ``Send`` then goes
  over exactly that channel, as the offline frame path draws it.
- Feedback given directly (``Transmitter.Feedback``): sigma^2 per RE (k/2 values, quantised as the emulator's) or
  one for the frame (used as a flat link's is), pinned until cleared. A malformed one is refused and the previous CSI stays.

The result is the core's feedback type (:data:`diffsem.pipeline.Feedback`): a float, or a
:class:`diffsem.phy.CsiFeedback` of (B, k/2) codes with one unit per symbol.
"""

from __future__ import annotations

import math
import time

import grpc
import torch

from diffsem.phy import CsiFeedback, quantise_csi
from diffsem.pipeline import Feedback
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import transmitter_pb2 as pb
from services_common.client import DEADLINE_S, SHORT_DEADLINE_S
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


class CsiSource:
    """The legitimate link's CSI for the transmitter. Not thread-safe: the transmitter calls it under its lock."""

    def __init__(self, emulator: ch_grpc.ChannelEmulatorStub, legit_link: str, k: int, max_age_s: float):
        self.emulator, self.legit_link, self.k, self.max_age_s = emulator, legit_link, k, max_age_s
        self.pinned: torch.Tensor | None = None
        self.sigma_c2, self.values = 0.0, 1  # the last CSI used: its mean level and how many levels it had
        self._state: tuple[ch_pb.LinkState | None, float] = (None, -1e9)

    def link_state(self, force: bool = False) -> ch_pb.LinkState:
        """The legitimate link's state from the emulator (cached ``max_age_s``)."""
        state, at = self._state
        if force or state is None or time.monotonic() - at > self.max_age_s:
            try:
                reply = self.emulator.GetState(ch_pb.GetStateRequest(link=self.legit_link), timeout=SHORT_DEADLINE_S)
            except grpc.RpcError as exc:
                raise NotReady(f"channel emulator unreachable for CSI feedback: {exc.details()}") from None
            state = reply.links[0]
            self._state = (state, time.monotonic())
        return state

    @property
    def age_s(self) -> float:
        return time.monotonic() - self._state[1]

    def pin(self, msg: pb.CsiFeedback) -> None:
        """Apply feedback given directly (or ``clear`` it); a malformed one raises and changes nothing."""
        self.pinned = None if msg.clear else pinned_feedback(msg, self.k)

    def for_frames(self, b: int) -> Feedback:
        """The CSI that shapes the next ``b`` frames (ofdm: their channel is drawn by the emulator now)."""
        if self.pinned is not None:
            fb: Feedback = (float(self.pinned[0]) if len(self.pinned) == 1 else
                            CsiFeedback.per_symbol(quantise_csi(self.pinned).expand(b, -1).contiguous()))
        elif self.link_state().settings.phy == "ofdm":
            fb = self._ofdm(b)
        else:
            fb = self.link_state().sigma_c2
        self._note(fb)
        return fb

    def _ofdm(self, b: int) -> Feedback:
        try:
            reply = self.emulator.Feedback(ch_pb.FeedbackRequest(link=self.legit_link, frames=b),
                                           timeout=DEADLINE_S)  # it draws B frames' channel: not a state query
        except grpc.RpcError as exc:
            raise NotReady(f"channel emulator unreachable for CSI feedback: {exc.details()}") from None
        if reply.phy != "ofdm":  # switched to flat since the cached state
            return reply.sigma_c2
        n = self.k // 2
        if len(reply.codes) != b * n:
            raise NotReady(f"the emulator's CSI feedback has {len(reply.codes)} codes for {b} frames of k/2 = {n}")
        return csi_of([reply.codes[i * n:(i + 1) * n] for i in range(b)], self.k, "emulator CSI feedback")

    def _note(self, fb: Feedback) -> None:
        if isinstance(fb, CsiFeedback):
            self.sigma_c2, self.values = float(fb.sigma_c2().mean()), self.k // 2
        else:
            self.sigma_c2, self.values = float(fb), 1
