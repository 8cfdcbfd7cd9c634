"""gRPC clients of the stack: same max message size as the servers, a deadline on every call."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services_common.auth import aio_interceptors, with_credential
from services_common.server import GRPC_OPTIONS

DEADLINE_S = 10.0        # default deadline of a unary call
SHORT_DEADLINE_S = 2.0   # state queries, health checks, telemetry


def grpc_channel(address: str, credential: str | None = None) -> grpc.Channel:
    """An insecure gRPC channel (a connection) to ``host:port`` with the stack's message-size options; every call carries
    ``credential`` (services_common/auth.py) when one is given."""
    return with_credential(grpc.insecure_channel(address, options=GRPC_OPTIONS), credential)


def grpc_aio_channel(address: str, credential: str | None = None) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=GRPC_OPTIONS, interceptors=aio_interceptors(credential))


def health_status(address: str, service: str = "", timeout: float = SHORT_DEADLINE_S) -> str:
    """``SERVING``, ``NOT_SERVING``, ... or ``UNREACHABLE``."""
    with grpc_channel(address) as ch:
        try:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
