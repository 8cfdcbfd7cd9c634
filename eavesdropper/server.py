"""The eavesdropper service: subscribes to its own link under a name and runs an attack chosen by name.

Each result (label guess and/or reconstruction) goes to the panel's ``Telemetry`` by message id. An attack that
returns only reconstructions is scored by the panel of judges, as offline (docs/design.md §4): every judge's label
goes in the report (``judge_labels``), and ``label`` is the first judge's.
``Attack`` runs the configured attack, or another registered one by name, on frames given directly.
"""

from __future__ import annotations

import time
from typing import Any

import grpc

from diffsem.attacks import AttackError
from diffsem.bundle import ModelBundle
from diffsem.errors import DiffSemError
from diffsem.judges import JudgePanel
from eavesdropper.attacks import ServiceAttack, make_attack
from protos.diffsem.v1 import common_pb2, eavesdropper_pb2, eavesdropper_pb2_grpc, frame_pb2, telemetry_pb2
from services_common import auth
from services_common.errors import BadRequest, grpc_errors
from services_common.frames import received_batch
from services_common.listener import ListenerLoop
from services_common.servicer import ModelServicer
from services_common.sizes import MAX_FRAMES
from services_common.tensors import to_proto


class Eavesdropper:
    """One named eavesdropper with its attack (and others built on demand for ``Attack``)."""

    def __init__(self, bundle: ModelBundle, name: str, attack: str = "feature-classifier",
                 options: dict[str, Any] | None = None, checkpoint: Any = None, panel: JudgePanel | None = None):
        self.bundle, self.name = bundle, name
        self.panel = panel or JudgePanel.of_bundle(bundle)
        self.attack_name = attack
        self.options = options or {}
        main_ckpt = {"checkpoint": checkpoint} if checkpoint is not None else {}
        self.attacks: dict[str, ServiceAttack] = {attack: make_attack(attack, bundle, **self.options, **main_ckpt)}
        self.failures: dict[str, int] = {}

    def _attack(self, name: str) -> ServiceAttack:
        if name not in self.attacks:
            try:
                self.attacks[name] = make_attack(name, self.bundle, **self.options)
            except DiffSemError as exc:
                raise BadRequest(str(exc)) from None
        return self.attacks[name]

    def run(self, frames: list[frame_pb2.ReceivedFrame], attack: str = "") -> list[eavesdropper_pb2.AttackResult]:
        name = attack or self.attack_name
        att = self._attack(name)
        if len(frames) > MAX_FRAMES:
            raise BadRequest(f"{len(frames)} frames in one Attack; at most {MAX_FRAMES}")
        batch = received_batch(frames, self.bundle.cfg.k, self.bundle.model_id)
        try:
            out = att.attack(batch)
        except AttackError:
            self.failures[name] = self.failures.get(name, 0) + len(frames)
            raise
        labels, judged = out.labels, {}
        if labels is None and out.reconstructions is not None:  # the task accuracy of an inversion attack
            judged = self.panel.labels(out.reconstructions, name)
            labels = next(iter(judged.values()))
        done = time.time()
        results = []
        for i, rf in enumerate(frames):
            r = eavesdropper_pb2.AttackResult(message_id=rf.frame.message_id, seq=rf.frame.seq, attack=name,
                                              abar_eff=float(batch.abar_eff[i]), threat_model=att.core.threat_model)
            if rf.frame.header.send_time:
                r.latency_ms = (done - rf.frame.header.send_time) * 1000.0
            if labels is not None:
                r.has_label, r.label = True, int(labels[i])
            for judge, lab in judged.items():
                r.judge_labels[judge] = int(lab[i])
            if out.reconstructions is not None:
                img = out.reconstructions[i].detach().float().nan_to_num(0.0).clamp(0, 1).cpu()  # finite for the panel
                r.reconstruction.CopyFrom(to_proto(img))
            results.append(r)
        return results

    def reports(self, frames: list[frame_pb2.ReceivedFrame]) -> list[telemetry_pb2.Report]:
        now = time.time()
        out = []
        for r in self.run(frames):
            rep = telemetry_pb2.Report(message_id=r.message_id, seq=r.seq, listener=self.name,
                                       role=common_pb2.ROLE_EAVESDROPPER, method=r.attack, has_label=r.has_label,
                                       label=r.label, latency_ms=r.latency_ms, abar_eff=r.abar_eff, report_time=now,
                                       threat_model=r.threat_model)
            if r.HasField("reconstruction"):
                rep.reconstruction.CopyFrom(r.reconstruction)
            rep.judge_labels.update(r.judge_labels)
            out.append(rep)
        return out

    def listen(self, emulator: str, telemetry: str | None, max_batch: int, max_wait_ms: float,
               credential: str | None = None) -> ListenerLoop:
        return ListenerLoop(emulator, common_pb2.ROLE_EAVESDROPPER, self.name, self.reports, self.attack_name,
                            telemetry, max_batch, max_wait_ms, credential).start()


class EavesdropperServicer(ModelServicer[Eavesdropper], eavesdropper_pb2_grpc.EavesdropperServicer):
    """gRPC wiring; UNAVAILABLE until the model is loaded. ``Attack`` and ``Info`` are the control panel's (``RULES``,
    checked at the door; its tokens are verified with the pins, never the key)."""

    SERVICE_NAME = eavesdropper_pb2.DESCRIPTOR.services_by_name["Eavesdropper"].full_name
    RULES = {"Attack": (auth.CONTROL,), "Info": (auth.CONTROL,)}
    add_to_server = staticmethod(eavesdropper_pb2_grpc.add_EavesdropperServicer_to_server)
    loading = "eavesdropper"

    @grpc_errors
    def Attack(self, request: eavesdropper_pb2.AttackRequest,
               context: grpc.ServicerContext) -> eavesdropper_pb2.AttackReply:
        return eavesdropper_pb2.AttackReply(results=self.model.run(list(request.frames), request.attack))

    @grpc_errors
    def Info(self, request: common_pb2.InfoRequest, context: grpc.ServicerContext) -> common_pb2.ServiceInfo:
        eve = self.model
        details = (self.loop_details() | {f"failed[{k}]": str(v) for k, v in eve.failures.items()}
                   | eve.attacks[eve.attack_name].core.details())
        return common_pb2.ServiceInfo(service="eavesdropper", name=eve.name, model_id=eve.bundle.model_id,
                                      device=str(eve.bundle.device), k=eve.bundle.cfg.k, mode=eve.attack_name,
                                      details=details)
