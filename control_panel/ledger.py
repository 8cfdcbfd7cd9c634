"""Ground truth and listener reports, joined by message id: the only place accuracy is counted.

The panel registers every message it sends (with its label, when it has one) before sending it. Reports
arrive from the receiver and the eavesdroppers through ``Telemetry.Report``. A report for an unknown message
id is counted as ``unmatched``; a second report for the same (message id, listener) as a ``duplicate``;
neither changes any accuracy, so retransmissions and restarts never double count.

A report with ``lost`` set (the link lost the frame) counts as a report without a correct decision.
Accuracy of a listener = correct / labelled reports (lost ones included in the denominator).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protos.diffsem.v1 import common_pb2, telemetry_pb2
from services_common.errors import BadRequest
from services_common.tensors import to_numpy

MAX_MESSAGES = 500_000
MAX_RECONSTRUCTIONS = 2_000
LATENCY_WINDOW = 2_000


@dataclass
class Outcome:
    """One listener's report on one message."""

    listener: str
    role: str
    method: str
    label: int | None
    lost: bool
    latency_ms: float
    abar_eff: float
    has_reconstruction: bool
    error: str = ""

    def as_json(self, truth: int | None, message_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "lost": self.lost, "method": self.method,
                               "latency_ms": round(self.latency_ms, 3), "abar_eff": self.abar_eff,
                               "error": self.error or None}
        out["correct"] = None if truth is None or self.lost else self.label == truth
        out["reconstruction_url"] = (f"/api/reconstructions/{message_id}/{self.listener}.png"
                                     if self.has_reconstruction else None)
        return out


@dataclass
class Tally:
    """Counts for one listener (globally or within a run)."""

    role: str = ""
    method: str = ""
    reports: int = 0
    labelled: int = 0
    correct: int = 0
    lost: int = 0
    last_error: str | None = None  # the listener's latest reason for reaching no decision
    latencies: list[float] = field(default_factory=list)

    def add(self, o: Outcome, truth: int | None) -> None:
        self.role, self.method = o.role, o.method
        self.reports += 1
        self.lost += o.lost
        if o.error:
            self.last_error = o.error
        if truth is not None:
            self.labelled += 1
            self.correct += (not o.lost) and o.label == truth
        if not o.lost:
            self.latencies.append(o.latency_ms)
            if len(self.latencies) > LATENCY_WINDOW:
                del self.latencies[: len(self.latencies) - LATENCY_WINDOW]

    def as_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) if self.latencies else None
        return {"role": self.role, "method": self.method, "reports": self.reports, "labelled": self.labelled,
                "correct": self.correct, "lost": self.lost, "last_error": self.last_error,
                "accuracy": self.correct / self.labelled if self.labelled else None,
                "latency_ms_p50": float(np.percentile(lat, 50)) if lat is not None else None,
                "latency_ms_p99": float(np.percentile(lat, 99)) if lat is not None else None}


@dataclass
class Message:
    """A sent image: its ground truth (never sent) and what each listener said."""

    id: str
    label: int | None
    run_id: str | None
    legit: str
    expected: set[str] = field(default_factory=set)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check_done(self) -> None:
        if self.legit in self.outcomes and self.expected <= self.outcomes.keys():
            self.done.set()


class Ledger:
    """Messages, reports and tallies. Used from the panel's event loop only (no locking needed)."""

    def __init__(self, legit: str = "receiver"):
        self.legit = legit
        self.messages: OrderedDict[str, Message] = OrderedDict()
        self.tallies: dict[str, Tally] = {}
        self.run_tallies: dict[str, dict[str, Tally]] = {}
        self.run_listeners: dict[str, asyncio.Event] = {}
        self.reconstructions: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.unmatched = 0
        self.duplicates = 0
        self.sent = 0

    def register(self, message_id: str, label: int | None, run_id: str | None = None,
                 expected: set[str] | None = None) -> Message:
        """Record a message before it is sent. Raises BadRequest on an id already in use."""
        if message_id in self.messages:
            raise BadRequest(f"message id {message_id!r} is already in use")
        msg = Message(message_id, label, run_id, self.legit, set(expected or ()))
        self.messages[message_id] = msg
        self.sent += 1
        while len(self.messages) > MAX_MESSAGES:
            self.messages.popitem(last=False)
        return msg

    def report(self, r: telemetry_pb2.Report) -> str:
        """Join one report: ``accepted``, ``unmatched`` or ``duplicate``."""
        msg = self.messages.get(r.message_id)
        if msg is None:
            self.unmatched += 1
            return "unmatched"
        if r.listener in msg.outcomes:
            self.duplicates += 1
            return "duplicate"
        role = "legitimate" if r.role == common_pb2.ROLE_LEGITIMATE else "eavesdropper"
        o = Outcome(r.listener, role, r.method, r.label if r.has_label and not r.lost else None, r.lost,
                    r.latency_ms, r.abar_eff, r.HasField("reconstruction"), r.error[:500])
        if o.has_reconstruction:
            try:
                img = to_numpy(r.reconstruction, "reconstruction").astype(np.float32).reshape(28, 28)
            except (BadRequest, ValueError):
                o.has_reconstruction = False
            else:
                self.reconstructions[(r.message_id, r.listener)] = img
                while len(self.reconstructions) > MAX_RECONSTRUCTIONS:
                    self.reconstructions.popitem(last=False)
        msg.outcomes[r.listener] = o
        self.tallies.setdefault(r.listener, Tally()).add(o, msg.label)
        if msg.run_id is not None:
            self.run_tallies.setdefault(msg.run_id, {}).setdefault(r.listener, Tally()).add(o, msg.label)
            event = self.run_listeners.get(msg.run_id)
            if event is not None and r.listener == self.legit:
                event.set()
        msg.check_done()
        return "accepted"

    def summary(self) -> dict[str, Any]:
        return {"messages": self.sent, "unmatched_reports": self.unmatched, "duplicate_reports": self.duplicates,
                "listeners": {name: t.as_json() for name, t in sorted(self.tallies.items())}}
