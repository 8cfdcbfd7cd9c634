"""The gRPC server every service of the stack runs, and ``serve``: the one service skeleton (docs/design.md,
"Service skeleton").

:class:`ServiceHost` is a ``grpc.aio`` server on its own event-loop thread:

- async servicer methods (the channel emulator) run on the loop, so an idle stream costs no thread;
- sync servicer methods (transmitter, receiver, eavesdropper) run on a bounded thread pool;
- the standard health service, NOT_SERVING for every name until :meth:`ServiceHost.set_serving`;
- server reflection listing the service's own names, health and reflection;
- max message sizes raised to :data:`MAX_MESSAGE_BYTES` (clients use the same, see ``client.py``);
- graceful shutdown: health goes NOT_SERVING, new RPCs are refused, running ones get ``grace_s`` to finish.

:func:`serve` parses a service's :class:`~services_common.spec.ServiceSpec`, builds its verifier, starts the host,
loads the models (health NOT_SERVING meanwhile) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services_common import auth
from services_common.spec import ServiceSpec

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Keepalive: across hosts a peer that vanishes (a cut link, a powered-off node) sends no RST, so without pings a
# Listen stream would hang for the kernel's TCP timeout (~15 min) and the emulator would keep a dead listener
# attached. Both ends ping every KEEPALIVE_S and drop a connection whose ping is unanswered for as long, so a cut
# host detaches within 2 x KEEPALIVE_S and reattaches by itself once its link is back. $DIFFSEM_GRPC_KEEPALIVE_S
# (default 20) sets it for every server and client of a process (tests/test_multihost.py uses 2).
KEEPALIVE_S = float(os.environ.get("DIFFSEM_GRPC_KEEPALIVE_S") or 20)
_KEEPALIVE_MS = max(1000, int(KEEPALIVE_S * 1000))
GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE_MS),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", min(5_000, _KEEPALIVE_MS)),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", min(5_000, _KEEPALIVE_MS)),  # server: accept those pings
    ("grpc.http2.max_pings_without_data", 0),  # a Listen stream may be idle between runs: keep pinging it
]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def add_health_and_reflection_aio(server: grpc.aio.Server, service_names: Sequence[str]) -> health.aio.HealthServicer:
    """Health (all names NOT_SERVING until set) and reflection on an asyncio server; returns the health servicer."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


class ServiceHost:
    """A ``grpc.aio`` server with health, reflection and graceful shutdown, on its own event-loop thread.

    ``service_names``: the full names this server implements (health entries and reflection). ``max_workers``:
    threads for sync servicer methods (an async method, such as a ``Listen`` stream, holds none).
    """

    def __init__(self, service_names: Sequence[str], max_workers: int = 32):
        self.names = list(service_names)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-aio", daemon=True)
        self._thread.start()
        self.pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
        self.loop.set_default_executor(self.pool)  # run_in_executor(None, ...) in servicers shares the bound
        self.server, self.health = self.run(self._create())
        self.port = 0
        self._stop = threading.Event()
        self._stop_callbacks: list[Callable[[], None]] = []
        self.exit_code = 0

    async def _create(self) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
        server = grpc.aio.server(migration_thread_pool=self.pool, options=GRPC_OPTIONS)
        servicer = add_health_and_reflection_aio(server, self.names)
        for name in ("", *self.names):
            await servicer.set(name, NOT_SERVING)
        return server, servicer

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run a coroutine on the server's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def add(self, adder: Callable[[Any, Any], None], servicer: Any) -> None:
        """Register a servicer, e.g. ``host.add(add_ReceiverServicer_to_server, servicer)``."""
        adder(servicer, self.server)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind (port 0 = ephemeral) and start; returns the bound port."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"could not bind {host}:{port}")
        self.run(self.server.start())
        from services_common import metrics  # Prometheus over HTTP when $DIFFSEM_METRICS_PORT is set

        metrics.start_from_env()
        return self.port

    def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING

        async def _set() -> None:
            for name in ("", *self.names):
                await self.health.set(name, status)

        self.run(_set())

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (stop background threads) when the server shuts down."""
        self._stop_callbacks.append(callback)

    def stop(self, grace_s: float = 3.0) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new RPCs, give running ones ``grace_s``. Any thread but the loop's."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.run(self.health.enter_graceful_shutdown())
        for cb in self._stop_callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - shutdown goes on regardless
                log.exception("stop callback failed")
        self.run(self.server.stop(grace_s))
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        # Wait for the loop to stop: a process that exits while grpc's poller still has callbacks on a running loop
        # prints an EBADF traceback (seen on a refused start-up in a container).
        self._thread.join(grace_s + 5)

    def wait_for_signal(self, grace_s: float = 3.0) -> None:
        """Block until SIGTERM or SIGINT (or :meth:`stop`), then shut down gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, args=(grace_s,), daemon=True).start())
        while not self._stop.is_set():
            self._stop.wait(0.5)
        self._thread.join(grace_s + 5)


class Servicer(Protocol):
    """What :func:`serve` needs of a servicer: its full gRPC service name and how to register it."""

    SERVICE_NAME: str

    def register(self, server: Any) -> None: ...


def _exit_now(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(spec: ServiceSpec, make_servicer: Callable[[Any, auth.Verifier], Servicer],
          load: Callable[[Any, Servicer, ServiceHost], str] | None = None, argv: Sequence[str] | None = None,
          log_name: Callable[[Any], str] | None = None) -> None:
    """Run one service: parse ``spec``, verify callers, bind, ``load(args, servicer, host)`` (health NOT_SERVING
    meanwhile; it returns a line for the log), then serve until a signal.

    A signal during loading exits at once. A load failure the core or the service explains (bad checkpoint, bad
    option) is logged as one line and exits with status 2, never as a traceback.
    """
    from diffsem.errors import DiffSemError
    from services_common import logs
    from services_common.errors import BadRequest

    args = spec.parse(argv)
    logger = logs.setup(log_name(args) if log_name else spec.name)
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)
    try:
        verifier = auth.verifier_from(args.auth_key_file, args.auth_pins_file, logger)
        servicer = make_servicer(args, verifier)
    except (DiffSemError, BadRequest, ValueError, OSError) as exc:
        logger.error("cannot start: %s", exc)
        raise SystemExit(2) from None
    host = ServiceHost([servicer.SERVICE_NAME])
    servicer.register(host.server)
    port = host.start(args.host, args.port)
    write_port_file(args.port_file, grpc=port)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_now)
    try:
        line = load(args, servicer, host) if load is not None else ""
    except (DiffSemError, BadRequest, OSError) as exc:
        logger.error("cannot start: %s", exc)
        host.stop(0)
        raise SystemExit(2) from None
    host.set_serving(True)
    logger.info("%s on %s:%d%s", spec.name, args.host, port, f", {line}" if line else "")
    host.wait_for_signal()
    if host.exit_code:
        raise SystemExit(host.exit_code)


def fail(host: ServiceHost, code: int = 1) -> None:
    """Stop ``host`` from a background thread and make the process exit with ``code`` (a fatal listener error)."""
    host.exit_code = code
    threading.Thread(target=host.stop, daemon=True).start()


def write_port_file(path: Path | None, **ports: int) -> None:
    """Atomically write ``{"pid": ..., **ports}`` as JSON so a launcher can find ephemeral ports."""
    if path is None:
        return
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    from services_common import metrics

    if metrics.port() is not None:
        ports = {**ports, "metrics": metrics.port()}
    tmp.write_text(json.dumps({"pid": os.getpid(), **ports}))
    tmp.replace(path)
