"""The panel's Telemetry service, attacked from a listener's position: reports only under one's own name."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest

from control_panel.ledger import Ledger
from control_panel.store import Store
from control_panel.telemetry import TelemetryServicer
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
from services_common import auth
from services_common.client import grpc_aio_channel

KEY = secrets.token_bytes(auth.KEY_BYTES)


def report(listener: str, role: int) -> telemetry_pb2.ReportRequest:
    return telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(
        message_id="m1", listener=listener, role=role, has_label=True, label=3)])


async def _calls(cases: list[tuple[str | None, telemetry_pb2.ReportRequest]]) -> list[object]:
    ledger = Ledger(Store(), "receiver")
    ledger.register("m1", 3, expected=set())
    server = grpc.aio.server()
    telemetry_pb2_grpc.add_TelemetryServicer_to_server(TelemetryServicer(ledger, auth.Verifier(KEY)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    out: list[object] = []
    try:
        for credential, req in cases:
            async with grpc_aio_channel(f"127.0.0.1:{port}", credential) as ch:
                try:
                    out.append((await telemetry_pb2_grpc.TelemetryStub(ch).Report(req, timeout=5)).accepted)
                except grpc.aio.AioRpcError as exc:
                    out.append(exc.code())
        out.append(ledger.summary())
    finally:
        await server.stop(0)
    return out


def test_a_listener_reports_only_under_its_own_name_and_role() -> None:
    eve = auth.issue(KEY, auth.EAVESDROPPER, "eve")
    rx = auth.issue(KEY, auth.RECEIVER, "receiver")
    forged = auth.issue(secrets.token_bytes(auth.KEY_BYTES), auth.RECEIVER, "receiver")
    results = asyncio.run(_calls([
        (None, report("receiver", common_pb2.ROLE_LEGITIMATE)),
        (forged, report("receiver", common_pb2.ROLE_LEGITIMATE)),
        (eve, report("receiver", common_pb2.ROLE_LEGITIMATE)),
        (eve, report("eve", common_pb2.ROLE_LEGITIMATE)),
        (eve, report("eve", common_pb2.ROLE_EAVESDROPPER)),
        (rx, report("receiver", common_pb2.ROLE_LEGITIMATE)),
    ]))
    assert results[:6] == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED,
                           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.PERMISSION_DENIED, 1, 1]
    summary = results[6]
    assert isinstance(summary, dict)
    assert summary["listeners"]["receiver"]["correct"] == 1, summary
    assert "eve" in summary["listeners"] and summary["messages"] == 1, summary


if __name__ == "__main__":
    pytest.main([__file__])
