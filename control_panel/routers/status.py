"""Status: health, the summary, Prometheus metrics, the offline results chart's data, the dashboard.

``/api/offline-results`` serves a ``diffsem eval`` results file; ``/api/sweep``, its name until this release, answers
the same and is deprecated (removed in the next release): it sat beside ``/api/sweeps``, the live sweeps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from control_panel.deps import Panel
from control_panel.errors import Missing, Refused, UpstreamError

router = APIRouter()


class UnreadableResults(Refused):
    """The offline results file exists but is not a results file the panel can read: 500."""

    status = 500
DASHBOARD = Path(__file__).resolve().parents[1] / "dashboard.html"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> str:
    return DASHBOARD.read_text()


@router.get("/healthz", tags=["meta"])
async def healthz(state: Panel) -> dict[str, Any]:
    return {"status": "ok", "telemetry_port": state.telemetry_port}


@router.get("/api/summary", tags=["status"])
async def summary(state: Panel) -> dict[str, Any]:
    """Accuracy and counts per listener (every eavesdropper), drops per link, the runs and sweeps in flight."""
    out = state.ledger.summary()
    try:
        await state.link_states()
    except UpstreamError as exc:  # the summary still answers with the last known links
        out["links_error"] = str(exc)
    out["links"] = state.last_links
    out["runs"] = {rid: r.status for rid, r in state.runs.active.items()}
    out["sweeps"] = {sid: s.status for sid, s in state.sweeps.active.items()}
    return out


@router.get("/metrics", tags=["meta"])
async def metrics(state: Panel) -> Response:
    try:
        await state.link_states()
    except UpstreamError:
        pass  # the link counters stay at their last known values
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/offline-results", tags=["status"])
async def offline_results(state: Panel) -> dict[str, Any]:
    """Accuracy-vs-SNR rows of an offline sweep (``diffsem eval`` results.json): the committed MNIST headline by
    default, or ``--sweep-file`` / ``$DIFFSEM_SWEEP_FILE``."""
    path = state.settings.sweep_file
    if path is None or not Path(path).is_file():
        raise Missing(f"no offline results file ({path}); set --sweep-file or $DIFFSEM_SWEEP_FILE")
    try:
        data = json.loads(await asyncio.to_thread(Path(path).read_text))
    except (OSError, ValueError) as exc:
        raise UnreadableResults(f"cannot read the offline results file {path}: {type(exc).__name__}") from None
    return {"file": Path(path).name, "dataset": data.get("dataset"), "model_id": data.get("model_id"),
            "n": data.get("n"), "default_t_star": (data.get("config") or {}).get("default_t_star"),
            "rows": data.get("rows", [])}


@router.get("/api/sweep", tags=["status"], deprecated=True)
async def offline_results_deprecated(state: Panel) -> dict[str, Any]:
    """Deprecated name of ``GET /api/offline-results`` (removed in the next release)."""
    return await offline_results(state)
