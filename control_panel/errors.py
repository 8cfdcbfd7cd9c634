"""The panel's HTTP errors, in one place: the gRPC-status-to-HTTP table and the app's exception handlers.

Routes never catch gRPC errors: they call the upstream services through :class:`Upstream`, whose errors carry
the service's name, and :func:`install` turns them (and the other domain errors) into JSON ``{"detail": ...}``
answers with the status from :data:`HTTP_OF_GRPC`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from diffsem.errors import DataError

T = TypeVar("T")


class Refused(Exception):
    """A request the panel itself refuses (not an upstream service): the subclass gives the HTTP status. The run and
    sweep managers raise these; :func:`install` answers them, so no manager knows HTTP."""

    status = 422

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Missing(Refused):
    """Something named that is not there (a run, a sweep): 404."""

    status = 404


class Conflict(Refused):
    """A request that collides with work in flight (a second sweep, t* while a sweep owns it): 409."""

    status = 409


def found(value: T | None, what: str) -> T:
    """``value``, or a 404 that says ``no <what>``: the one way a route answers for something that is not there."""
    if value is None:
        raise Missing(f"no {what}")
    return value

HTTP_OF_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.CANCELLED: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
UPSTREAM_DEFAULT = 502  # anything else (INTERNAL, UNKNOWN, our own credential refused...) is a bad gateway


class UpstreamError(Exception):
    """A gRPC call from the panel to another service failed."""

    def __init__(self, service: str, code: grpc.StatusCode, details: str):
        super().__init__(f"{service}: {details}")
        self.service, self.code, self.details = service, code, details

    @property
    def http_status(self) -> int:
        return HTTP_OF_GRPC.get(self.code, UPSTREAM_DEFAULT)


class Upstream:
    """A gRPC stub whose failures raise :class:`UpstreamError` naming the service."""

    def __init__(self, service: str, stub: Any):
        self.service, self.stub = service, stub

    async def call(self, method: str, request: Any, timeout: float) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise UpstreamError(self.service, exc.code(), exc.details() or exc.code().name) from None


class TooBusy(Exception):
    """A bounded resource is full: 429 with ``Retry-After``."""

    def __init__(self, detail: str, retry_after_s: int = 1):
        super().__init__(detail)
        self.detail, self.retry_after_s = detail, retry_after_s


def too_busy_response(detail: str, retry_after_s: int) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=429, headers={"Retry-After": str(retry_after_s)})


def validation_text(errors: list[dict[str, Any]]) -> str:
    """``field.path: message; ...`` from pydantic's errors (the leading ``body``/``query`` dropped)."""
    parts = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        parts.append(f"{'.'.join(loc[1:]) or (loc[0] if loc else 'body')}: {e.get('msg', '')}")
    return "; ".join(parts)


def install(app: FastAPI) -> None:
    """Register the handlers that turn domain errors into HTTP answers."""

    @app.exception_handler(UpstreamError)
    async def upstream(request: Request, exc: UpstreamError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "grpc_status": exc.code.name}, status_code=exc.http_status)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(TooBusy)
    async def busy(request: Request, exc: TooBusy) -> JSONResponse:
        return too_busy_response(exc.detail, exc.retry_after_s)

    @app.exception_handler(json_format.ParseError)
    async def bad_settings(request: Request, exc: json_format.ParseError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DataError)
    async def no_data(request: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse({"detail": validation_text(errors), "errors": errors}, status_code=422)
