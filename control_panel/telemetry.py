"""The ``Telemetry`` gRPC service (asyncio): listeners report decisions here, the ledger joins them."""

from __future__ import annotations

import grpc

from control_panel.ledger import Ledger
from protos.diffsem.v1 import telemetry_pb2, telemetry_pb2_grpc
from services_common.errors import BadRequest, grpc_errors

MAX_REPORTS = 10_000


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServicer):
    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    @grpc_errors
    async def Report(self, request: telemetry_pb2.ReportRequest,
                     context: grpc.aio.ServicerContext) -> telemetry_pb2.ReportReply:
        if len(request.reports) > MAX_REPORTS:
            raise BadRequest(f"{len(request.reports)} reports in one call; at most {MAX_REPORTS}")
        for r in request.reports:
            if not r.message_id or not r.listener:
                raise BadRequest("every report needs a message_id and a listener name")
        counts = {"accepted": 0, "unmatched": 0, "duplicate": 0}
        for r in request.reports:
            counts[self.ledger.report(r)] += 1
        return telemetry_pb2.ReportReply(accepted=counts["accepted"], unmatched=counts["unmatched"],
                                         duplicates=counts["duplicate"])
