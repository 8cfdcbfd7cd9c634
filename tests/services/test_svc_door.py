"""The door of a gRPC service (services_common/door.py): every kind of call is refused before its handler runs when
the token or the role is wrong, a method without a rule is closed, and health stays open."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos.diffsem.v1 import common_pb2, transmitter_pb2, transmitter_pb2_grpc
from services_common import auth
from services_common.client import grpc_channel
from services_common.server import ServiceHost, host_for
from transmitter.servicer import TransmitterServicer

KEY = secrets.token_bytes(auth.KEY_BYTES)


class Counting(TransmitterServicer):
    """The transmitter's wiring with no model (UNAVAILABLE once a call gets in), counting handler runs."""

    RULES = {**TransmitterServicer.RULES}
    calls = 0

    def GetState(self, request, context):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        return super().GetState(request, context)

    def TransmitStream(self, request_iterator, context):  # type: ignore[no-untyped-def]
        type(self).calls += 1
        return super().TransmitStream(request_iterator, context)


@pytest.fixture()
def address() -> Iterator[str]:
    verifier = auth.Verifier(KEY, audience=auth.TRANSMITTER_AUDIENCE)
    servicer = Counting(verifier)
    servicer.RULES = {m: r for m, r in TransmitterServicer.RULES.items() if m != "Info"}  # Info: no rule
    host: ServiceHost = host_for(servicer, verifier)
    port = host.start()
    host.set_serving(True)
    Counting.calls = 0
    yield f"127.0.0.1:{port}"
    host.stop(0.5)


def code(call: object) -> grpc.StatusCode:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_refused_calls_of_every_kind_never_reach_their_handler(address: str) -> None:
    eve = auth.issue(KEY, auth.EAVESDROPPER, "eve")
    forged = auth.issue(secrets.token_bytes(auth.KEY_BYTES), auth.CONTROL, auth.CONTROL)
    for credential, want in ((eve, grpc.StatusCode.PERMISSION_DENIED), (forged, grpc.StatusCode.UNAUTHENTICATED),
                             (None, grpc.StatusCode.UNAUTHENTICATED)):
        with grpc_channel(address, credential) as ch:
            stub = transmitter_pb2_grpc.TransmitterStub(ch)
            assert code(lambda s=stub: s.GetState(common_pb2.InfoRequest(), timeout=10)) == want
            stream = stub.TransmitStream(iter([transmitter_pb2.TransmitRequest()]), timeout=10)
            assert code(lambda s=stream: next(s)) == want
    assert Counting.calls == 0
    with grpc_channel(address, auth.issue(KEY, auth.CONTROL, auth.CONTROL)) as ch:  # the panel's token gets in
        assert code(lambda: transmitter_pb2_grpc.TransmitterStub(ch).GetState(common_pb2.InfoRequest(), timeout=10)) \
            == grpc.StatusCode.UNAVAILABLE  # its handler ran: no model loaded here
    assert Counting.calls == 1


def test_a_method_without_a_rule_is_closed_and_health_is_open(address: str) -> None:
    with grpc_channel(address, auth.issue(KEY, auth.CONTROL, auth.CONTROL)) as ch:
        with pytest.raises(grpc.RpcError) as err:
            transmitter_pb2_grpc.TransmitterStub(ch).Info(common_pb2.InfoRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "no access rule" in err.value.details()
    with grpc_channel(address) as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
