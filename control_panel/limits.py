"""The panel's HTTP limits (docs/design.md §8, "Bounded HTTP side"), each answered with a status that says why.

- **body sizes** (:class:`LimitsMiddleware`): the upload limit plus the multipart overhead on ``POST /api/transmit``,
  ``max_json_bytes`` on every other body; 413 naming the limit, from the declared ``Content-Length`` before reading,
  or as soon as a streamed body passes it (FastAPI's own ``max_body_size`` answers a bare "Content Too Large");
- **uploads in flight** (:class:`LimitsMiddleware`): at most ``max_uploads`` ``POST /api/transmit`` at once; past
  it 429 with ``Retry-After`` before the body is read, so a flood is refused at once instead of queueing;
- **body read timeout** (:class:`LimitsMiddleware`): a body not complete within ``body_timeout_s`` of the app first
  awaiting it gets 408, so a slow-body client holds its slot for a bounded time;
- **request head** (:class:`LimitedH11Protocol`, uvicorn's h11 protocol): a request line plus headers over
  ``max_header_bytes`` gets 431, and a connection that has not sent a complete head within ``header_timeout_s``
  is answered 408 and closed;
- **connections**: uvicorn's ``limit_concurrency`` (503 past it), set in ``__main__``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from control_panel.errors import too_busy_response

UPLOAD_PATH = "/api/transmit"
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and fields around the file


@dataclass
class HttpLimits:
    max_upload_bytes: int
    max_uploads: int = 16
    max_json_bytes: int = 1 << 20
    body_timeout_s: float = 10.0


class LimitsMiddleware:
    """ASGI middleware for body sizes, upload slots and the body read timeout; ``uploads_in_flight`` is readable."""

    def __init__(self, app: ASGIApp, limits: HttpLimits):
        self.app, self.limits = app, limits
        self.uploads_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        is_upload = scope["path"] == UPLOAD_PATH and scope["method"] == "POST"
        limit = self.limits.max_upload_bytes + MULTIPART_OVERHEAD if is_upload else self.limits.max_json_bytes
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            response = JSONResponse({"detail": f"request body of {int(length)} bytes is over the limit of {limit} "
                                               "bytes"}, status_code=413)
            await response(scope, receive, send)
            return
        if not is_upload:
            await self.app(scope, self._timed(receive, limit), send)
            return
        if self.uploads_in_flight >= self.limits.max_uploads:
            response = too_busy_response(f"{self.uploads_in_flight} uploads are in flight (the limit is "
                                         f"{self.limits.max_uploads}); retry after a second", 1)
            await response(scope, receive, send)
            return
        self.uploads_in_flight += 1
        try:
            await self.app(scope, self._timed(receive, limit), send)
        finally:
            self.uploads_in_flight -= 1

    def _timed(self, receive: Receive, limit: int) -> Receive:
        """``receive`` raising 408 when the body is not complete within the timeout of its first call, and 413 as soon
        as it passes ``limit`` bytes (HTTPException: FastAPI passes it through its body parsing)."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        complete = False
        received = 0

        async def timed_receive() -> Message:
            nonlocal deadline, complete, received
            if complete:  # after the body only a disconnect can come: no deadline
                return await receive()
            deadline = deadline or loop.time() + self.limits.body_timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise HTTPException(408, f"request body not received within {self.limits.body_timeout_s} s",
                                    headers={"Connection": "close"}) from None
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"request body is over the limit of {limit} bytes")
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed_receive


def _head_answer(status: int, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a bound on the request head's size and on the time to send it."""

    max_header_bytes = 16 * 1024
    header_timeout_s = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        super().connection_lost(exc)

    def _head_timeout(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self._reject(408, f"request head not received within {self.header_timeout_s} s")

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self.cycle is None:  # still reading the first request's head
            buf = self.conn.trailing_data[0] + data
            end = buf.find(b"\r\n\r\n")
            if (end + 4 if end >= 0 else len(buf)) > self.max_header_bytes:
                self._reject(431, f"request line and headers are over the limit of {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def _reject(self, status: int, detail: str) -> None:
        self._head_timer.cancel()
        self.transport.write(_head_answer(status, detail))
        self.transport.close()


def limited_protocol(max_header_bytes: int, header_timeout_s: float) -> type[LimitedH11Protocol]:
    """The protocol class to give uvicorn (``http=``) with these limits."""
    return type("PanelH11Protocol", (LimitedH11Protocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s})
