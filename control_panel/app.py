"""The control panel: a FastAPI app (OpenAPI docs at ``/docs``) plus the gRPC ``Telemetry`` server.

Both run on one asyncio event loop, so the ledger (ground truth joined with reports) needs no locks.

HTTP API:

- ``POST /api/transmit``: multipart ``file`` (PNG, JPEG or .npy; see :mod:`diffsem.imageio` for the limits
  and the preprocessing) and optional ``label`` (0-9). Sends the image and waits up to ``timeout_s`` for the
  receiver's decision and every attached eavesdropper's result.
- ``POST /api/runs``, ``GET /api/runs/{id}``, ``GET /api/runs``, ``DELETE /api/runs/{id}``: test-set runs.
- ``GET /api/summary``: accuracy and counts per listener, drops per link.
- ``GET /api/channel``, ``PUT /api/channel``: link settings (SNR, fading, traces, ...) and t*.
- ``GET /api/messages/{id}``, ``GET /api/reconstructions/{id}/{listener}.png``.
- ``GET /metrics`` (Prometheus), ``GET /healthz``, ``GET /`` (dashboard).
"""

from __future__ import annotations

import asyncio
import hmac
import io
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
import numpy as np
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from control_panel.ledger import Ledger
from control_panel.runs import RunManager, RunRequest
from control_panel.telemetry import TelemetryServicer
from diffsem.imageio import MAX_BYTES, ImageError, ImageTooLarge, load_image
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc, transmitter_pb2, transmitter_pb2_grpc
from services_common.auth import Verifier
from services_common.client import DEADLINE_S, SHORT_DEADLINE_S, aio_channel
from services_common.server import GRPC_OPTIONS, SERVING, add_health_and_reflection_aio
from services_common.tensors import to_proto

log = logging.getLogger(__name__)
TELEMETRY = telemetry_pb2.DESCRIPTOR.services_by_name["Telemetry"].full_name
DASHBOARD = Path(__file__).with_name("dashboard.html")
STATIC = Path(__file__).with_name("static")  # vendored uPlot 1.6.32 (MIT, see static/uPlot.LICENSE)


@dataclass
class PanelSettings:
    """Addresses and limits. ``telemetry_port`` 0 = ephemeral (read it from ``app.state.telemetry_port``)."""

    transmitter: str = "127.0.0.1:50051"
    emulator: str = "127.0.0.1:50052"
    telemetry_host: str = "127.0.0.1"
    telemetry_port: int = 50060
    legit: str = "receiver"
    max_upload_bytes: int = MAX_BYTES
    transmit_timeout_s: float = 10.0
    token: str | None = None  # bearer token required by the mutating endpoints (None: no check)
    sweep_file: Path | None = None  # results.json of `diffsem eval`, for the dashboard's accuracy-vs-SNR chart
    credential: str | None = None  # this panel's control-role credential for its gRPC calls (services_common/auth.py)
    auth_key: bytes | None = None  # the authority key that verifies the listeners' telemetry (None: not verified)


class TracePatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    points: list[tuple[float, float]] = Field(default_factory=list, description="[(t_s, snr_db), ...]")
    interp: Literal["step", "linear"] = "step"
    loop: bool = False


class LinkPatch(BaseModel):
    """Fields left out keep their value. SNRs in dB, times in ms."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    snr_db: float | None = Field(None, ge=-100, le=100)
    snr_offset_db: float | None = Field(None, ge=-100, le=100, description="follow the legitimate SNR + offset")
    clear_offset: bool = False
    fading: Literal["none", "rayleigh", "rician"] | None = None
    rician_k: float | None = Field(None, ge=0)
    coherence_frames: int | None = Field(None, ge=1)
    loss_prob: float | None = Field(None, ge=0, le=1)
    erasure_prob: float | None = Field(None, ge=0, le=1)
    delay_ms: float | None = Field(None, ge=0, le=60_000)
    jitter_ms: float | None = Field(None, ge=0, le=60_000)
    deadline_ms: float | None = Field(None, ge=0)
    csi: bool | None = None
    queue_size: int | None = Field(None, ge=1)
    seed: int | None = Field(None, ge=0, lt=2**63)
    trace: TracePatch | None = None
    clear_trace: bool = False


class ChannelPatch(BaseModel):
    """PUT /api/channel body: per-link settings by link name, and the transmitter's privacy level."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    links: dict[str, LinkPatch] = Field(default_factory=dict)
    t_star: int | None = Field(None, description="privacy level t* in [0, T)")
    self_noise: bool | None = Field(None, description="false: send plain frames; true needs t_star")
    tx_seed: int | None = Field(None, ge=0, lt=2**63, description="restart the self-noise generator")


def link_settings(p: LinkPatch) -> ch_pb.LinkSettings:
    s = ch_pb.LinkSettings()
    for name in ("snr_db", "snr_offset_db", "rician_k", "coherence_frames", "loss_prob", "erasure_prob", "delay_ms",
                 "jitter_ms", "deadline_ms", "csi", "queue_size", "seed"):
        value = getattr(p, name)
        if value is not None:
            setattr(s, name, value)
    s.clear_offset, s.clear_trace = p.clear_offset, p.clear_trace
    if p.fading is not None:
        s.fading = p.fading
    if p.trace is not None:
        s.trace.CopyFrom(ch_pb.SnrTrace(points=[ch_pb.TracePoint(t_s=t, snr_db=v) for t, v in p.trace.points],
                                        interp=ch_pb.INTERP_LINEAR if p.trace.interp == "linear" else ch_pb.INTERP_STEP,
                                        loop=p.trace.loop))
    return s


def http_error(exc: grpc.aio.AioRpcError, what: str) -> HTTPException:
    """gRPC status -> HTTP: INVALID_ARGUMENT 400, OUT_OF_RANGE 422, unavailable 503, deadline 504."""
    status = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.OUT_OF_RANGE: 422,
              grpc.StatusCode.FAILED_PRECONDITION: 409, grpc.StatusCode.UNAVAILABLE: 503,
              grpc.StatusCode.DEADLINE_EXCEEDED: 504}.get(exc.code(), 502)
    return HTTPException(status, f"{what}: {exc.details()}")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def link_json(lk: ch_pb.LinkState) -> dict[str, Any]:
    return {"role": common_pb2.Role.Name(lk.role).removeprefix("ROLE_").lower(), "attached": lk.attached,
            "snr_db": lk.snr_db, "sigma_c2": _finite(lk.sigma_c2), "fading": lk.fading, "rician_k": lk.rician_k,
            "coherence_frames": lk.coherence_frames, "loss_prob": lk.loss_prob, "erasure_prob": lk.erasure_prob,
            "delay_ms": lk.delay_ms, "jitter_ms": lk.jitter_ms, "deadline_ms": lk.deadline_ms,
            "snr_offset_db": lk.snr_offset_db if lk.has_offset else None, "trace": lk.has_trace, "seed": lk.seed,
            "queue_size": lk.queue_size, "queue_depth": lk.queue_depth, "frames_in": lk.frames_in,
            "delivered": lk.delivered, "dropped_queue": lk.dropped_queue, "lost": lk.lost, "late": lk.late,
            "no_listener": lk.no_listener}


class LedgerCollector:
    """Prometheus view of the ledger and the last known link counters, computed at scrape time."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self) -> Any:
        ledger: Ledger = self.app.state.ledger
        reports = CounterMetricFamily("diffsem_reports", "Reports received per listener", labels=["listener", "role"])
        correct = CounterMetricFamily("diffsem_correct", "Correct labelled decisions", labels=["listener"])
        labelled = CounterMetricFamily("diffsem_labelled", "Reports on labelled messages", labels=["listener"])
        lost = CounterMetricFamily("diffsem_lost", "Frames reported lost", labels=["listener"])
        acc = GaugeMetricFamily("diffsem_accuracy", "Accuracy (correct / labelled)", labels=["listener"])
        for name, t in ledger.tallies.items():
            reports.add_metric([name, t.role], t.reports)
            correct.add_metric([name], t.correct)
            labelled.add_metric([name], t.labelled)
            lost.add_metric([name], t.lost)
            if t.labelled:
                acc.add_metric([name], t.correct / t.labelled)
        yield from (reports, correct, labelled, lost, acc)
        yield CounterMetricFamily("diffsem_messages", "Messages sent by the panel", value=ledger.sent)
        yield CounterMetricFamily("diffsem_unmatched_reports", "Reports for unknown ids", value=ledger.unmatched)
        yield CounterMetricFamily("diffsem_duplicate_reports", "Reports ignored as duplicates", value=ledger.duplicates)
        drops = CounterMetricFamily("diffsem_link_dropped_queue", "Frames dropped at a full listener queue",
                                    labels=["link"])
        delivered = CounterMetricFamily("diffsem_link_delivered", "Frames delivered", labels=["link"])
        snr = GaugeMetricFamily("diffsem_link_snr_db", "Current link SNR (dB)", labels=["link"])
        for name, lk in (self.app.state.last_links or {}).items():
            drops.add_metric([name], lk["dropped_queue"])
            delivered.add_metric([name], lk["delivered"])
            snr.add_metric([name], lk["snr_db"])
        yield from (drops, delivered, snr)


def create_app(settings: PanelSettings | None = None) -> FastAPI:
    """The panel app; its lifespan starts the Telemetry gRPC server and the clients."""
    settings = settings or PanelSettings()
    bearer = HTTPBearer(auto_error=False, description="DIFFSEM_PANEL_TOKEN, when the panel was started with one")

    async def require_token(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        """Mutating endpoints: 401 unless ``Authorization: Bearer <token>`` matches (when a token is set)."""
        if not settings.token:
            return
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer $DIFFSEM_PANEL_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_token)]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        server = grpc.aio.server(options=GRPC_OPTIONS)
        telemetry_pb2_grpc.add_TelemetryServicer_to_server(TelemetryServicer(app.state.ledger, Verifier(settings.auth_key)),
                                                           server)
        health = add_health_and_reflection_aio(server, [TELEMETRY])
        port = server.add_insecure_port(f"{settings.telemetry_host}:{settings.telemetry_port}")
        await server.start()
        for name in ("", TELEMETRY):
            await health.set(name, SERVING)
        app.state.telemetry_port = port
        tx_channel = aio_channel(settings.transmitter, settings.credential)
        emu_channel = aio_channel(settings.emulator, settings.credential)
        app.state.tx = transmitter_pb2_grpc.TransmitterStub(tx_channel)
        app.state.emu = ch_grpc.ChannelEmulatorStub(emu_channel)
        app.state.runs = RunManager(app.state.ledger, app.state.tx)
        log.info("telemetry gRPC on %s:%d; transmitter %s, emulator %s", settings.telemetry_host, port,
                 settings.transmitter, settings.emulator)
        try:
            yield
        finally:
            await health.enter_graceful_shutdown()
            for run in app.state.runs.runs.values():
                if run.task is not None and not run.task.done():
                    run.task.cancel()
            await server.stop(2.0)
            await tx_channel.close()
            await emu_channel.close()

    app = FastAPI(title="DiffSem control panel", version="0.1.0", lifespan=lifespan,
                  description="Send images through the live DiffSem stack, run test sets, change the channel.")
    app.state.settings = settings
    app.state.ledger = Ledger(settings.legit)
    app.state.last_links = {}
    registry = CollectorRegistry()
    registry.register(LedgerCollector(app))
    transmit_seconds = Histogram("diffsem_transmit_seconds", "POST /api/transmit latency", registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    uploads = Counter("diffsem_uploads", "Uploads by HTTP status", ["status"], registry=registry)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()]
        text = "; ".join(f"{'.'.join(e['loc'][1:]) or e['loc'][0] if e['loc'] else 'body'}: {e['msg']}"
                         for e in errors)
        if request.url.path == "/api/transmit":
            uploads.labels("422").inc()
        return JSONResponse({"detail": text, "errors": errors}, status_code=422)

    @app.middleware("http")
    async def upload_limit(request: Request, call_next: Any) -> Response:
        if request.url.path == "/api/transmit" and request.method == "POST":
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.max_upload_bytes + 64 * 1024:
                uploads.labels("413").inc()
                return JSONResponse({"detail": f"upload of {length} bytes is over the limit of "
                                               f"{settings.max_upload_bytes} bytes"}, status_code=413)
        return await call_next(request)

    async def channel_state() -> ch_pb.ChannelState:
        try:
            state = await app.state.emu.GetState(ch_pb.GetStateRequest(), timeout=SHORT_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            raise http_error(exc, "channel emulator") from None
        app.state.last_links = {lk.name: link_json(lk) for lk in state.links}
        return state

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard() -> str:
        return DASHBOARD.read_text()

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/sweep", tags=["status"])
    async def sweep() -> dict[str, Any]:
        """Accuracy vs SNR rows of the latest offline sweep (``diffsem eval`` results.json), if the panel has one."""
        path = settings.sweep_file
        if path is None or not Path(path).is_file():
            raise HTTPException(404, "no sweep results configured (--sweep-file or $DIFFSEM_SWEEP_FILE)")
        import json

        try:
            data = json.loads(await asyncio.to_thread(Path(path).read_text))
        except (OSError, ValueError) as exc:
            raise HTTPException(500, f"cannot read {path}: {exc}") from None
        return {"file": str(path), "dataset": data.get("dataset"), "model_id": data.get("model_id"),
                "n": data.get("n"), "rows": data.get("rows", [])}

    @app.get("/healthz", tags=["meta"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "telemetry_port": app.state.telemetry_port}

    @app.post("/api/transmit", tags=["images"], dependencies=auth)
    async def transmit(file: UploadFile = File(..., description="PNG, JPEG or .npy image"),  # noqa: B008
                       label: str | None = Form(None, description="ground truth 0-9 (kept at the panel)"),
                       timeout_s: float | None = Query(None, gt=0, le=120, description="wait for results"),
                       ) -> JSONResponse:
        """Send one image; wait for the receiver's decision and each attached eavesdropper's result.

        Accepted: PNG, JPEG or NumPy .npy (recognised by content), at most 5 MiB and 4096 pixels per side (from
        the header, checked before decoding: 413 otherwise). Preprocessing to 28x28 grayscale in [0, 1]:
        transparency composited on white, luminance, inverted when the border is light (MNIST digits are
        light on black), then a 28x28 image is kept as is, any other size is cropped to its content, scaled
        to 20 px on the longer side and centred by centre of mass (MNIST's normalisation). The label, if given,
        stays at the panel and never crosses the channel.
        """
        started = time.perf_counter()
        status = 500
        try:
            result = await _transmit(file, label, timeout_s or settings.transmit_timeout_s)
            status = 200
            return JSONResponse(result)
        except HTTPException as exc:
            status = exc.status_code
            raise
        finally:
            uploads.labels(str(status)).inc()
            if status == 200:
                transmit_seconds.observe(time.perf_counter() - started)

    async def _transmit(file: UploadFile, label: str | None, timeout_s: float) -> dict[str, Any]:
        truth = None
        if label not in (None, ""):
            try:
                truth = int(label)
            except ValueError:
                raise HTTPException(422, f"label must be an integer from 0 to 9, got {label!r}") from None
            if not 0 <= truth <= 9:
                raise HTTPException(422, f"label must be an integer from 0 to 9, got {truth}")
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {settings.max_upload_bytes} bytes")
        try:
            pre = await asyncio.to_thread(load_image, data, settings.max_upload_bytes)
        except ImageTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(400, str(exc)) from None
        state = await channel_state()
        attached = {lk.name for lk in state.links if lk.attached}
        if settings.legit not in attached:
            raise HTTPException(503, f"the receiver is not attached to the channel emulator (link {settings.legit!r})")
        ledger: Ledger = app.state.ledger
        mid = uuid.uuid4().hex
        msg = ledger.register(mid, truth, expected=attached)
        try:
            reply = await app.state.tx.Transmit(transmitter_pb2.TransmitRequest(
                images=to_proto(pre.image.unsqueeze(0)), message_ids=[mid]), timeout=DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            raise http_error(exc, "transmitter") from None
        try:
            await asyncio.wait_for(msg.done.wait(), timeout=timeout_s)
        except TimeoutError:
            pass
        if settings.legit not in msg.outcomes:
            raise HTTPException(504, f"no decision from the receiver within {timeout_s} s (message {mid})")
        return {**message_json(msg), "seq": reply.seqs[0], "preprocessing": pre.info,
                "header": {"t_star": reply.header.t_star if reply.header.HasField("t_star") else None,
                           "a": reply.header.a, "sigma_self2": reply.header.sigma_self2,
                           "sigma_c2_feedback": reply.sigma_c2_feedback},
                "elapsed_ms": round((time.monotonic() - msg.created) * 1000, 3)}

    def message_json(msg: Any) -> dict[str, Any]:
        legit = msg.outcomes.get(settings.legit)
        return {"message_id": msg.id, "label": msg.label, "run_id": msg.run_id,
                "receiver": legit.as_json(msg.label, msg.id) if legit else None,
                "eavesdroppers": {name: {**o.as_json(msg.label, msg.id), "attack": o.method}
                                  for name, o in sorted(msg.outcomes.items()) if name != settings.legit},
                "missing": sorted(msg.expected - msg.outcomes.keys())}

    @app.get("/api/messages/{message_id}", tags=["images"])
    async def get_message(message_id: str) -> dict[str, Any]:
        msg = app.state.ledger.messages.get(message_id)
        if msg is None:
            raise HTTPException(404, f"no message {message_id!r}")
        return message_json(msg)

    @app.get("/api/reconstructions/{message_id}/{listener}.png", tags=["images"],
             responses={200: {"content": {"image/png": {}}}})
    async def reconstruction(message_id: str, listener: str) -> Response:
        img = app.state.ledger.reconstructions.get((message_id, listener))
        if img is None:
            raise HTTPException(404, f"no reconstruction of {message_id!r} by {listener!r}")
        buf = io.BytesIO()
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
        return Response(buf.getvalue(), media_type="image/png")

    @app.post("/api/runs", status_code=202, tags=["runs"], dependencies=auth)
    async def start_run(req: RunRequest) -> dict[str, Any]:
        """Stream a slice of a test set through the stack; poll ``GET /api/runs/{id}``."""
        run = app.state.runs.start(req)
        return {"id": run.id, "url": f"/api/runs/{run.id}", "status": run.status}

    @app.get("/api/runs", tags=["runs"])
    async def list_runs() -> list[dict[str, Any]]:
        return [r.as_json(app.state.ledger) for r in app.state.runs.runs.values()]

    @app.get("/api/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: str) -> dict[str, Any]:
        run = app.state.runs.runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return run.as_json(app.state.ledger)

    @app.get("/api/runs/{run_id}/decisions", tags=["runs"])
    async def run_decisions(run_id: str) -> dict[str, Any]:
        """Per image of the run, in order: ground truth and each listener's label (null: none or lost)."""
        run = app.state.runs.runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        msgs = [app.state.ledger.messages.get(f"{run.id}-{run.req.start + i}") for i in range(run.req.n)]
        names = sorted({name for m in msgs if m is not None for name in m.outcomes})
        return {"id": run.id, "start": run.req.start, "truth": [m.label if m else None for m in msgs],
                "listeners": {name: [m.outcomes[name].label if m and name in m.outcomes else None for m in msgs]
                              for name in names}}

    @app.delete("/api/runs/{run_id}", tags=["runs"], dependencies=auth)
    async def cancel_run(run_id: str) -> dict[str, Any]:
        run = app.state.runs.runs.get(run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id!r}")
        if run.task is not None and not run.task.done():
            run.task.cancel()
        return {"id": run_id, "status": "cancelling" if run.status == "running" else run.status}

    @app.get("/api/summary", tags=["status"])
    async def summary() -> dict[str, Any]:
        out = app.state.ledger.summary()
        try:
            await channel_state()
            out["links"] = app.state.last_links
        except HTTPException as exc:
            out["links"], out["links_error"] = app.state.last_links, exc.detail
        out["runs"] = {rid: r.status for rid, r in app.state.runs.runs.items()}
        return out

    @app.get("/api/channel", tags=["channel"])
    async def get_channel() -> dict[str, Any]:
        await channel_state()
        try:
            tx = await app.state.tx.GetState(common_pb2.InfoRequest(), timeout=SHORT_DEADLINE_S)
        except grpc.aio.AioRpcError as exc:
            raise http_error(exc, "transmitter") from None
        return {"links": app.state.last_links, "t_star": tx.t_star if tx.HasField("t_star") else None, "a": tx.a,
                "sigma_c2_feedback": tx.sigma_c2_feedback, "num_train_timesteps": tx.num_train_timesteps,
                "model_id": tx.model_id}

    @app.put("/api/channel", tags=["channel"], dependencies=auth)
    async def put_channel(patch: ChannelPatch) -> dict[str, Any]:
        """Change links and t* live. All values are checked before anything changes."""
        tx_cfg = None
        if patch.t_star is not None or patch.self_noise is not None or patch.tx_seed is not None:
            if patch.self_noise and patch.t_star is None:
                raise HTTPException(422, "self_noise=true needs a t_star")
            try:
                tx = await app.state.tx.GetState(common_pb2.InfoRequest(), timeout=SHORT_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                raise http_error(exc, "transmitter") from None
            if patch.t_star is not None and not 0 <= patch.t_star < tx.num_train_timesteps:
                raise HTTPException(422, f"t_star={patch.t_star} is out of range [0, {tx.num_train_timesteps - 1}]")
            tx_cfg = transmitter_pb2.TransmitterConfig(disable_self_noise=patch.self_noise is False)
            if patch.t_star is not None and patch.self_noise is not False:
                tx_cfg.t_star = patch.t_star
            if patch.tx_seed is not None:
                tx_cfg.seed = patch.tx_seed
        if patch.links:
            updates = [ch_pb.LinkUpdate(name=name, settings=link_settings(p)) for name, p in patch.links.items()]
            try:
                await app.state.emu.Configure(ch_pb.ConfigureRequest(links=updates), timeout=SHORT_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                raise http_error(exc, "channel emulator") from None
        if tx_cfg is not None:
            try:
                await app.state.tx.Configure(tx_cfg, timeout=SHORT_DEADLINE_S)
            except grpc.aio.AioRpcError as exc:
                raise http_error(exc, "transmitter") from None
        return await get_channel()

    @app.get("/metrics", tags=["meta"])
    async def metrics() -> Response:
        try:
            await channel_state()
        except HTTPException:
            pass
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
