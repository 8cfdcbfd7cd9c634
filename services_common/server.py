"""A gRPC server with the plumbing every service of the stack needs (DESIGN.md section 5).

- the standard health service, NOT_SERVING for every name until :meth:`ServiceHost.set_serving`;
- server reflection listing the service's own names, health and reflection;
- max message sizes raised to :data:`MAX_MESSAGE_BYTES` (clients use the same, see ``client.py``);
- graceful shutdown: health goes NOT_SERVING, new RPCs are refused, running ones get ``grace_s`` to finish.

Both the threaded server (transmitter, emulator, receiver, eavesdropper) and the asyncio one (the control
panel's Telemetry, which shares FastAPI's event loop) are covered.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def full_names(*services: Any) -> list[str]:
    """Full service names (``diffsem.v1.Receiver``) from ServiceDescriptor objects."""
    return [s.full_name for s in services]


class ServiceHost:
    """A threaded ``grpc.server`` with health, reflection and graceful shutdown.

    ``service_names``: the full names this server implements (health entries and reflection).
    """

    def __init__(self, service_names: Sequence[str], max_workers: int = 32):
        self.names = list(service_names)
        self.server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                                  options=GRPC_OPTIONS)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection([*self.names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server)
        self.set_serving(False)
        self.port = 0
        self._stop = threading.Event()
        self._stop_callbacks: list[Callable[[], None]] = []
        self.exit_code = 0

    def add(self, adder: Callable[[Any, grpc.Server], None], servicer: Any) -> None:
        """Register a servicer, e.g. ``host.add(add_ReceiverServicer_to_server, servicer)``."""
        adder(servicer, self.server)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind (port 0 = ephemeral) and start; returns the bound port."""
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if not self.port:
            raise OSError(f"could not bind {host}:{port}")
        self.server.start()
        from services_common import metrics  # Prometheus over HTTP when $DIFFSEM_METRICS_PORT is set

        metrics.start_from_env(host)
        return self.port

    def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.names):
            self.health.set(name, status)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (stop background threads) when the server shuts down."""
        self._stop_callbacks.append(callback)

    def stop(self, grace_s: float = 3.0) -> None:
        """Graceful shutdown: NOT_SERVING, refuse new RPCs, give running ones ``grace_s``."""
        if self._stop.is_set():
            return
        self._stop.set()
        self.health.enter_graceful_shutdown()
        for cb in self._stop_callbacks:
            try:
                cb()
            except Exception:  # noqa: BLE001 - shutdown goes on regardless
                log.exception("stop callback failed")
        self.server.stop(grace_s).wait()

    def wait_for_signal(self, grace_s: float = 3.0) -> None:
        """Block until SIGTERM or SIGINT (or :meth:`stop`), then shut down gracefully."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=self.stop, args=(grace_s,), daemon=True).start())
        while not self._stop.is_set():
            self._stop.wait(0.5)
        self.server.wait_for_termination()


def _exit_now(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_or_exit(host: ServiceHost, load: Callable[[], None], log: logging.Logger) -> None:
    """Run ``load()`` (model loading; health stays NOT_SERVING meanwhile), then serve until a signal.

    A signal during loading exits at once. A load failure the core or the service explains (bad
    checkpoint, bad option) is logged as one line and exits with status 2, never as a traceback.
    """
    from diffsem.errors import DiffSemError
    from services_common.errors import BadRequest

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_now)
    try:
        load()
    except (DiffSemError, BadRequest, OSError) as exc:
        log.error("cannot start: %s", exc)
        host.stop(0)
        raise SystemExit(2) from None
    host.wait_for_signal()
    if host.exit_code:
        raise SystemExit(host.exit_code)


def add_health_and_reflection_aio(server: grpc.aio.Server, service_names: Sequence[str]) -> health.aio.HealthServicer:
    """Health (all names NOT_SERVING until set) and reflection on an asyncio server; returns the health servicer."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection([*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return servicer


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
