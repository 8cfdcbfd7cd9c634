"""The control panel's HTTP app, assembled: settings -> state, routers, error handlers, limits, static files.

The routes live in :mod:`control_panel.routers` (images, runs, sweeps, links, status, judging), the shared state in
:mod:`control_panel.state`, the gRPC-to-HTTP error table in :mod:`control_panel.errors` and the HTTP limits in
:mod:`control_panel.limits`. OpenAPI docs at ``/docs`` use the Swagger UI vendored under ``static/swagger-ui``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from control_panel import errors
from control_panel.limits import UPLOAD_PATH, HttpLimits, LimitsMiddleware
from control_panel.metrics import UploadMetricsMiddleware
from control_panel.routers import images, judging, links, runs, status, sweeps
from control_panel.settings import PanelSettings
from control_panel.state import PanelState

__all__ = ["PanelSettings", "create_app"]
STATIC = Path(__file__).with_name("static")  # vendored uPlot 1.6.32 (MIT) and Swagger UI 5.35.0 (Apache-2.0)


def create_app(settings: PanelSettings | None = None) -> FastAPI:
    """The panel app; its lifespan starts the Telemetry gRPC server and the upstream clients."""
    settings = settings or PanelSettings()
    state = PanelState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(title="DiffSem control panel", version="0.2.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Send images through the live DiffSem stack, run test sets and privacy sweeps, change "
                              "the channel.")
    app.state.panel = state
    errors.install(app)
    for module in (images, runs, sweeps, links, status, judging):
        app.include_router(module.router)
    app.add_middleware(LimitsMiddleware, limits=HttpLimits(settings.max_upload_bytes, settings.max_uploads,
                                                           settings.max_json_bytes, settings.body_timeout_s))
    app.add_middleware(UploadMetricsMiddleware, metrics=state.metrics, path=UPLOAD_PATH)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="DiffSem control panel - API",
                                   swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger-ui/favicon-32x32.png")

    return app
