"""Prometheus metrics of a service process, served over HTTP when ``$DIFFSEM_METRICS_PORT`` is set.

``DIFFSEM_METRICS_PORT=9100`` (compose: every container the same port) or ``0`` (ephemeral; the launcher
reads the bound port from the service's port file, key ``metrics``). Unset: no metrics server.
``DIFFSEM_METRICS_HOST``: the address it binds (default 127.0.0.1, so no other host or container reaches a
metrics port unless a deployment opens it on purpose).

The channel emulator's per-link counters (frames in, delivered, queue drops, losses, queue depth) are exported
by the control panel's ``/metrics``, scraped from the emulator's ``GetState``; the listeners (receiver,
eavesdroppers) export their own side here.
"""

from __future__ import annotations

import logging
import os

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)
ENV = "DIFFSEM_METRICS_PORT"
HOST_ENV = "DIFFSEM_METRICS_HOST"

FRAMES_IN = Counter("diffsem_listener_frames_in", "Frames received from the emulator", ["listener"])
FRAMES_LOST = Counter("diffsem_listener_frames_lost", "Frames reported lost (link loss or processing failure)",
                      ["listener"])
REPORTS_OUT = Counter("diffsem_listener_reports_out", "Reports delivered to telemetry", ["listener"])
REPORT_FAILURES = Counter("diffsem_listener_report_failures", "Reports telemetry did not take", ["listener"])
SUBSCRIPTIONS = Counter("diffsem_listener_subscriptions", "Listen calls opened (resubscriptions after faults)",
                        ["listener"])
BATCH_SIZE = Histogram("diffsem_listener_batch_size", "Frames per processed batch", ["listener"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
DECODE_SECONDS = Histogram("diffsem_listener_decode_seconds", "Seconds to process (decode/attack) one batch",
                           ["listener"], buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
QUEUE_DEPTH = Gauge("diffsem_listener_queue_depth", "Frames waiting in the listener's inbox", ["listener"])
ATTACHED = Gauge("diffsem_listener_attached", "1 while subscribed to the emulator", ["listener"])

_port: int | None = None


def start_from_env() -> int | None:
    """Start the metrics HTTP server once if ``$DIFFSEM_METRICS_PORT`` is set (on ``$DIFFSEM_METRICS_HOST``, default
    127.0.0.1); return its port."""
    global _port
    if _port is not None or not os.environ.get(ENV, "").strip():
        return _port
    host = os.environ.get(HOST_ENV, "").strip() or "127.0.0.1"
    server, _thread = start_http_server(int(os.environ[ENV]), addr=host)
    _port = server.server_port
    log.info("Prometheus metrics on http://%s:%d/metrics", host, _port)
    return _port


def port() -> int | None:
    return _port
