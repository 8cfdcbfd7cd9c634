"""The transmitter's gRPC wiring, importable without torch so the service binds its port before it loads its model
(the launcher starts the control panel as soon as the port is known)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc

from protos.diffsem.v1 import common_pb2
from protos.diffsem.v1 import transmitter_pb2 as pb
from protos.diffsem.v1 import transmitter_pb2_grpc as pb_grpc
from services_common import auth
from services_common.errors import grpc_errors
from services_common.servicer import ModelServicer
from services_common.sizes import images_request_bytes

if TYPE_CHECKING:
    from transmitter.server import Transmitter  # noqa: F401 - the base class names it as a string


class TransmitterServicer(ModelServicer["Transmitter"], pb_grpc.TransmitterServicer):
    """gRPC wiring; answers UNAVAILABLE until the model is loaded. Every RPC is the control panel's (``RULES``, checked
    at the door). The largest request is a Transmit batch of :data:`~services_common.sizes.MAX_FRAMES` images."""

    SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Transmitter"].full_name
    RULES = dict.fromkeys(("Transmit", "TransmitStream", "Configure", "GetState", "Feedback", "Info"), (auth.CONTROL,))
    MAX_REQUEST_BYTES = images_request_bytes()
    add_to_server = staticmethod(pb_grpc.add_TransmitterServicer_to_server)
    loading = "transmitter"

    @grpc_errors
    def Transmit(self, request: pb.TransmitRequest, context: grpc.ServicerContext) -> pb.TransmitReply:
        return self.model.transmit(request)

    @grpc_errors
    def TransmitStream(self, request_iterator: Iterator[pb.TransmitRequest],
                       context: grpc.ServicerContext) -> Iterator[pb.TransmitReply]:
        tx = self.model
        for req in request_iterator:
            yield tx.transmit(req)

    @grpc_errors
    def Configure(self, request: pb.TransmitterConfig, context: grpc.ServicerContext) -> pb.TransmitterState:
        tx = self.model
        tx.configure(request)
        return tx.state()

    @grpc_errors
    def Feedback(self, request: pb.CsiFeedback, context: grpc.ServicerContext) -> pb.TransmitterState:
        tx = self.model
        tx.feedback(request)
        return tx.state()

    @grpc_errors
    def GetState(self, request: common_pb2.InfoRequest, context: grpc.ServicerContext) -> pb.TransmitterState:
        return self.model.state()

    @grpc_errors
    def Info(self, request: common_pb2.InfoRequest, context: grpc.ServicerContext) -> common_pb2.ServiceInfo:
        tx = self.model
        b = tx.bundle
        return common_pb2.ServiceInfo(service="transmitter", model_id=b.model_id, device=str(b.device), k=b.cfg.k,
                                      details={"t_star": str(tx.t_star), "legit_link": tx.legit_link})
