"""The ``Telemetry`` gRPC service (asyncio): listeners report decisions here, the ledger joins them.

Bounded reads (docs/design.md §8): the server reads requests of at most :data:`MAX_REQUEST_BYTES` (``MAX_REPORTS``
reports within their fields' caps) and serves at most :data:`MAX_CONCURRENT_CALLS` calls at once; its door checks the
caller's token and role. Then :func:`check_reports` checks every report of a call, its free-text fields against their
caps and its numbers for being finite, and the call is refused whole (INVALID_ARGUMENT naming the report, the field
and the bound) before the ledger sees any of it: nothing is stored, and nothing already counted changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
import numpy as np

from control_panel.ledger import Ledger
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
from services_common import auth
from services_common.errors import BadRequest, grpc_errors
from services_common.sizes import (
    MAX_ERROR_CHARS,
    MAX_ID_CHARS,
    MAX_JUDGE_CHARS,
    MAX_JUDGES,
    MAX_METHOD_CHARS,
    MAX_REPORTS,
    RECONSTRUCTION_BYTES,
    REPORT_BYTES,
    SLACK_BYTES,
)

MAX_REQUEST_BYTES = MAX_REPORTS * REPORT_BYTES + SLACK_BYTES
MAX_CONCURRENT_CALLS = 8  # calls at once (and streams per connection); past it RESOURCE_EXHAUSTED, and they retry
ROLES = (common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER)
RECONSTRUCTION_SHAPES = ((1, 28, 28), (28, 28))


def _text(i: int, field: str, value: str, cap: int, empty_ok: bool = True) -> None:
    if len(value) > cap or (not value and not empty_ok):
        raise BadRequest(f"report {i}: {field} has {len(value)} characters; accepted: {0 if empty_ok else 1} to {cap}")


def check_report(i: int, r: telemetry_pb2.Report) -> None:
    """BadRequest naming report ``i``'s first field outside its bound."""
    _text(i, "message_id", r.message_id, MAX_ID_CHARS, empty_ok=False)
    if not auth.NAME_RE.match(r.listener):
        raise BadRequest(f"report {i}: listener must be a link name (1-64 letters, digits, '_' or '-')")
    if r.role not in ROLES:
        raise BadRequest(f"report {i}: role must be ROLE_LEGITIMATE or ROLE_EAVESDROPPER")
    _text(i, "method", r.method, MAX_METHOD_CHARS)
    _text(i, "error", r.error, MAX_ERROR_CHARS)
    _text(i, "threat_model", r.threat_model, MAX_METHOD_CHARS)
    for name in ("latency_ms", "abar_eff", "report_time"):
        if not math.isfinite(getattr(r, name)):
            raise BadRequest(f"report {i}: {name} = {getattr(r, name)}; numbers must be finite")
    if len(r.judge_labels) > MAX_JUDGES:
        raise BadRequest(f"report {i}: {len(r.judge_labels)} judge labels; at most {MAX_JUDGES}")
    for judge in r.judge_labels:
        _text(i, "a judge name", judge, MAX_JUDGE_CHARS, empty_ok=False)
    if r.HasField("reconstruction"):
        rec = r.reconstruction
        if (rec.dtype != common_pb2.DTYPE_FLOAT32 or tuple(rec.shape) not in RECONSTRUCTION_SHAPES
                or len(rec.data) != RECONSTRUCTION_BYTES):
            raise BadRequest(f"report {i}: a reconstruction is one float32 image (1, 28, 28) of "
                             f"{RECONSTRUCTION_BYTES} bytes; got {common_pb2.DType.Name(rec.dtype)} "
                             f"{tuple(rec.shape)}, {len(rec.data)} bytes")
        if not np.isfinite(np.frombuffer(rec.data, np.float32)).all():
            raise BadRequest(f"report {i}: the reconstruction holds NaN or infinite pixels; numbers must be finite")


def check_reports(reports: Sequence[telemetry_pb2.Report]) -> None:
    """Every report of one call within its bounds, or BadRequest for the first that is not."""
    if len(reports) > MAX_REPORTS:
        raise BadRequest(f"{len(reports)} reports in one call; at most {MAX_REPORTS}")
    for i, r in enumerate(reports):
        check_report(i, r)


class TelemetryServicer(telemetry_pb2_grpc.TelemetryServicer):
    """``Report`` is the listeners' (``RULES``, at the door); each reports only under its own name and role."""

    SERVICE_NAME = telemetry_pb2.DESCRIPTOR.services_by_name["Telemetry"].full_name
    RULES = {"Report": (auth.RECEIVER, auth.EAVESDROPPER)}

    def __init__(self, ledger: Ledger, verifier: auth.Verifier | None = None):
        self.ledger = ledger
        self.verifier = verifier or auth.Verifier(None)
        self.max_request_bytes = MAX_REQUEST_BYTES

    def register(self, server: grpc.aio.Server) -> None:
        telemetry_pb2_grpc.add_TelemetryServicer_to_server(self, server)

    @grpc_errors
    async def Report(self, request: telemetry_pb2.ReportRequest,
                     context: grpc.aio.ServicerContext) -> telemetry_pb2.ReportReply:
        who = self.verifier.identify(context.invocation_metadata())  # its role was checked at the door
        check_reports(request.reports)
        if who is not None:  # a listener reports only under its own name and role
            role = common_pb2.ROLE_LEGITIMATE if who.role == auth.RECEIVER else common_pb2.ROLE_EAVESDROPPER
            for r in request.reports:
                if r.listener != who.name or r.role != role:
                    raise auth.AuthError(f"{who} may report only as listener {who.name!r} with its own role, "
                                         f"not as {r.listener!r}", denied=True)
        counts = self.ledger.report(list(request.reports))
        return telemetry_pb2.ReportReply(accepted=counts["accepted"], unmatched=counts["unmatched"],
                                         duplicates=counts["duplicate"])
