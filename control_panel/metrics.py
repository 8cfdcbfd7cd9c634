"""The panel's Prometheus metrics: ledger counts and link counters, computed at scrape time, and upload latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from control_panel.ledger import GLOBAL, Ledger

Links = Callable[[], dict[str, dict[str, Any]]]  # the last known links' JSON, by name


class _Collector:
    """Reads the ledger's counts and the links' counters when scraped."""

    def __init__(self, ledger: Ledger, links: Links):
        self.ledger, self.links = ledger, links

    def collect(self) -> Any:
        ledger = self.ledger
        reports = CounterMetricFamily("diffsem_reports", "Reports received per listener", labels=["listener", "role"])
        correct = CounterMetricFamily("diffsem_correct", "Correct labelled decisions", labels=["listener"])
        labelled = CounterMetricFamily("diffsem_labelled", "Reports on labelled messages", labels=["listener"])
        lost = CounterMetricFamily("diffsem_lost", "Frames reported lost", labels=["listener"])
        acc = GaugeMetricFamily("diffsem_accuracy", "Accuracy (correct / labelled)", labels=["listener"])
        for name, t in ledger.tallies.of(GLOBAL).items():
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
        for name, lk in self.links().items():
            drops.add_metric([name], lk["dropped_queue"])
            delivered.add_metric([name], lk["delivered"])
            snr.add_metric([name], lk["snr_db"])
        yield from (drops, delivered, snr)


class PanelMetrics:
    """The registry ``GET /metrics`` serves, and the instruments the routes update."""

    def __init__(self, ledger: Ledger, links: Links):
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(ledger, links))
        self.transmit_seconds = Histogram("diffsem_transmit_seconds", "POST /api/transmit latency",
                                          registry=self.registry,
                                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.uploads = Counter("diffsem_uploads", "Uploads by HTTP status", ["status"], registry=self.registry)


class UploadMetricsMiddleware:
    """Counts ``POST /api/transmit`` answers by status (429s and 413s included) and times the successful ones."""

    def __init__(self, app: Any, metrics: PanelMetrics, path: str):
        self.app, self.metrics, self.path = app, metrics, path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.uploads.labels(str(status)).inc()
            if status == 200:
                self.metrics.transmit_seconds.observe(time.perf_counter() - started)
