"""Turning exceptions into gRPC status codes with messages that say what was wrong.

- :class:`BadRequest` and the core's ``ConfigError`` / ``DiffSemError`` -> INVALID_ARGUMENT
- :class:`OutOfRange` and the core's ``OutOfRangeError`` (a value outside its documented range, e.g. t*, a link
  setting outside its bound) -> OUT_OF_RANGE
- ``CheckpointError``, ``KeyedNoiseError`` (this service's self-noise key) -> FAILED_PRECONDITION
- :class:`NotReady` -> UNAVAILABLE
- :class:`NotFound` -> NOT_FOUND, :class:`AlreadyExists` -> ALREADY_EXISTS, :class:`Exhausted` -> RESOURCE_EXHAUSTED
- ``services_common.auth.AuthError`` -> UNAUTHENTICATED (no or forged credential) or PERMISSION_DENIED (wrong role)
- a failing downstream call (``grpc.RpcError``) -> UNAVAILABLE (or its own code when it was a client error)
- anything else -> INTERNAL, logged with its traceback
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from diffsem.errors import CheckpointError, DiffSemError, KeyedNoiseError, OutOfRangeError
from services_common.auth import AuthError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_PASS_THROUGH = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


class BadRequest(ValueError):
    """Input that is malformed: wrong shape, dtype, unknown name. Maps to INVALID_ARGUMENT."""


class OutOfRange(BadRequest):
    """A well-formed value outside its range (t* >= T, a probability > 1). Maps to OUT_OF_RANGE."""


class NotReady(RuntimeError):
    """The service is not ready (model loading, downstream missing). Maps to UNAVAILABLE."""


class NotFound(BadRequest):
    """A well-formed name of something that does not exist (a link). Maps to NOT_FOUND."""


class AlreadyExists(BadRequest):
    """A name already in use by someone else (an attached listener). Maps to ALREADY_EXISTS."""


class Exhausted(RuntimeError):
    """A resource limit is reached (the number of links). Maps to RESOURCE_EXHAUSTED."""


_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (OutOfRange, grpc.StatusCode.OUT_OF_RANGE), (OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (NotFound, grpc.StatusCode.NOT_FOUND), (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (Exhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception."""
    if isinstance(exc, AuthError):
        return exc.code, str(exc)
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code, str(exc)
    if isinstance(exc, CheckpointError | KeyedNoiseError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, BadRequest | DiffSemError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotReady):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        detail = exc.details() if hasattr(exc, "details") else str(exc)
        return (code if code in _PASS_THROUGH else grpc.StatusCode.UNAVAILABLE), f"downstream call failed: {detail}"
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def grpc_errors(method: F) -> F:
    """Decorate a servicer method (unary or streaming, sync or async) to abort with :func:`status_for`."""

    def _abort_code(exc: BaseException) -> tuple[grpc.StatusCode, str]:
        code, msg = status_for(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("%s failed", method.__qualname__)
        return code, msg

    if inspect.isasyncgenfunction(method):
        @functools.wraps(method)
        async def agen(self: Any, request: Any, context: Any) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                await context.abort(*_abort_code(exc))
        return agen  # type: ignore[return-value]
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def acall(self: Any, request: Any, context: Any) -> Any:
            try:
                return await method(self, request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:  # noqa: BLE001
                await context.abort(*_abort_code(exc))
        return acall  # type: ignore[return-value]
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def gen(self: Any, request: Any, context: Any) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:  # noqa: BLE001
                context.abort(*_abort_code(exc))
        return gen  # type: ignore[return-value]

    @functools.wraps(method)
    def call(self: Any, request: Any, context: Any) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # noqa: BLE001
            context.abort(*_abort_code(exc))
    return call  # type: ignore[return-value]
