"""The ``Telemetry`` gRPC service (asyncio): listeners report decisions here, the ledger joins them."""

from __future__ import annotations

import grpc

from control_panel.ledger import Ledger
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
from services_common import auth
from services_common.errors import BadRequest, grpc_errors

MAX_REPORTS = 10_000
MAX_JUDGES = 16  # judge labels per report (a panel of judges is a handful)


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServicer):
    def __init__(self, ledger: Ledger, verifier: auth.Verifier | None = None):
        self.ledger = ledger
        self.verifier = verifier or auth.Verifier(None)

    @grpc_errors
    async def Report(self, request: telemetry_pb2.ReportRequest,
                     context: grpc.aio.ServicerContext) -> telemetry_pb2.ReportReply:
        if len(request.reports) > MAX_REPORTS:
            raise BadRequest(f"{len(request.reports)} reports in one call; at most {MAX_REPORTS}")
        who = self.verifier.require(context, [auth.RECEIVER, auth.EAVESDROPPER])
        for r in request.reports:
            if not r.message_id or not r.listener:
                raise BadRequest("every report needs a message_id and a listener name")
            if len(r.judge_labels) > MAX_JUDGES:
                raise BadRequest(f"{len(r.judge_labels)} judge labels in one report; at most {MAX_JUDGES}")
        if who is not None:  # a listener reports only under its own name and role
            role = common_pb2.ROLE_LEGITIMATE if who.role == auth.RECEIVER else common_pb2.ROLE_EAVESDROPPER
            for r in request.reports:
                if r.listener != who.name or r.role != role:
                    raise auth.AuthError(f"{who} may report only as listener {who.name!r} with its own role, "
                                         f"not as {r.listener!r}", denied=True)
        counts = self.ledger.report(list(request.reports))
        return telemetry_pb2.ReportReply(accepted=counts["accepted"], unmatched=counts["unmatched"],
                                         duplicates=counts["duplicate"])
