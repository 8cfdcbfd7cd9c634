"""The legitimate receiver service.

It subscribes to the emulator's legitimate link, batches frames that arrive together (``max_batch``,
``max_wait_ms``), turns each into z_t at abar_eff with the core's ``listener_view`` (``keyed_listener_view``
for keyed self-noise: a missing or wrong key fails those frames with the reason) and decodes it with
:class:`diffsem.receiver.DiffusionReceiver` in the configured mode. Every decision goes to the panel's
``Telemetry`` with its latency (transmitter send time -> decision). ``Decode`` decodes frames given
directly, in any mode.
"""

from __future__ import annotations

import logging
import time

import grpc
import torch

from diffsem.bundle import ModelBundle
from diffsem.config import CLASSIFIERS, DECODE_MODES
from diffsem.diffusion import nearest_timestep
from diffsem.keyed import check_value
from diffsem.receiver import DiffusionReceiver
from protos.diffsem.v1 import common_pb2, frame_pb2, receiver_pb2, receiver_pb2_grpc, telemetry_pb2
from services_common import auth
from services_common.errors import BadRequest, grpc_errors
from services_common.frames import received_batch
from services_common.listener import ListenerLoop
from services_common.servicer import ModelServicer
from services_common.sizes import MAX_FRAMES

log = logging.getLogger(__name__)


class Receiver:
    """Decoding with the core receiver. ``mode``: default decode mode; ``classifier``: ``matched`` or
    ``channel`` (see :class:`diffsem.receiver.DiffusionReceiver`); ``steps``/``eta``: reverse process;
    ``key``: the keyed self-noise secret shared with the transmitter (None: none held)."""

    def __init__(self, bundle: ModelBundle, mode: str = "selfref", steps: int = 1, eta: float = 0.0,
                 name: str = "receiver", classifier: str = "matched", key: bytes | None = None):
        if mode not in DECODE_MODES:
            raise BadRequest(f"unknown decode mode {mode!r}; use one of {', '.join(DECODE_MODES)}")
        self.bundle, self.mode, self.name, self.key = bundle, mode, name, key
        self.core = DiffusionReceiver(bundle, steps=steps, eta=eta, classifier=classifier)

    @property
    def method(self) -> str:
        """The configured decoder as reported to telemetry: ``selfref``, or ``channel:selfref``."""
        return self.mode if self.core.classifier == "matched" else f"{self.core.classifier}:{self.mode}"

    def decode(self, frames: list[frame_pb2.ReceivedFrame], mode: str = "",
               classifier: str = "") -> list[receiver_pb2.Decision]:
        """Decide the labels of delivered frames (B,); raises BadRequest on malformed frames or modes."""
        mode = mode or self.mode
        classifier = classifier or self.core.classifier
        if mode not in DECODE_MODES:
            raise BadRequest(f"unknown decode mode {mode!r}; use one of {', '.join(DECODE_MODES)}")
        if classifier not in CLASSIFIERS:
            raise BadRequest(f"unknown classifier {classifier!r}; use one of {', '.join(CLASSIFIERS)}")
        if len(frames) > MAX_FRAMES:
            raise BadRequest(f"{len(frames)} frames in one Decode; at most {MAX_FRAMES}")
        start = time.time()
        batch = received_batch(frames, self.bundle.cfg.k, self.bundle.model_id, self.key, key_holder=True)
        result = self.core.decode_many(batch.z, batch.abar_eff, [mode], [classifier])[(classifier, mode)]
        probs = torch.softmax(result.logits.float(), dim=1)
        t_eff = nearest_timestep(batch.abar_eff, self.bundle.abar)
        done = time.time()
        return [receiver_pb2.Decision(
            message_id=rf.frame.message_id, seq=rf.frame.seq, label=int(result.labels[i]), probs=probs[i].tolist(),
            abar_eff=float(batch.abar_eff[i]), t_eff=int(t_eff[i]), mode=mode, unet_evals=result.unet_evals,
            latency_ms=(done - rf.frame.header.send_time) * 1000.0 if rf.frame.header.send_time else 0.0,
            decode_ms=(done - start) * 1000.0, batch_size=len(frames), classifier=classifier)
            for i, rf in enumerate(frames)]

    def reports(self, frames: list[frame_pb2.ReceivedFrame]) -> list[telemetry_pb2.Report]:
        """The listener path: decode in the configured mode and turn decisions into telemetry reports."""
        now = time.time()
        return [telemetry_pb2.Report(message_id=d.message_id, seq=d.seq, listener=self.name,
                                     role=common_pb2.ROLE_LEGITIMATE, method=self.method, has_label=True,
                                     label=d.label,
                                     latency_ms=d.latency_ms, abar_eff=d.abar_eff, report_time=now)
                for d in self.decode(frames)]

    def listen(self, emulator: str, telemetry: str | None, max_batch: int, max_wait_ms: float,
               credential: str | None = None) -> ListenerLoop:
        return ListenerLoop(emulator, common_pb2.ROLE_LEGITIMATE, self.name, self.reports, self.method, telemetry,
                            max_batch, max_wait_ms, credential=credential).start()


class ReceiverServicer(ModelServicer[Receiver], receiver_pb2_grpc.ReceiverServicer):
    """gRPC wiring; UNAVAILABLE until the model is loaded. ``Decode`` and ``Info`` are the control panel's (``RULES``,
    checked at the door)."""

    SERVICE_NAME = receiver_pb2.DESCRIPTOR.services_by_name["Receiver"].full_name
    RULES = {"Decode": (auth.CONTROL,), "Info": (auth.CONTROL,)}
    add_to_server = staticmethod(receiver_pb2_grpc.add_ReceiverServicer_to_server)
    loading = "receiver"

    @grpc_errors
    def Decode(self, request: receiver_pb2.DecodeRequest, context: grpc.ServicerContext) -> receiver_pb2.DecodeReply:
        rx = self.model
        return receiver_pb2.DecodeReply(decisions=rx.decode(list(request.frames), request.mode, request.classifier))

    @grpc_errors
    def Info(self, request: common_pb2.InfoRequest, context: grpc.ServicerContext) -> common_pb2.ServiceInfo:
        rx = self.model
        details = {"steps": str(rx.core.steps), "eta": str(rx.core.eta), "classifier": rx.core.classifier,
                   "key_check": check_value(rx.key) if rx.key else ""} | self.loop_details()
        if self.loop is not None:
            details.update(max_batch=str(self.loop.max_batch), max_wait_ms=str(self.loop.max_wait_s * 1000))
        return common_pb2.ServiceInfo(service="receiver", name=rx.name, model_id=rx.bundle.model_id,
                                      device=str(rx.bundle.device), k=rx.bundle.cfg.k, mode=rx.mode, details=details)
