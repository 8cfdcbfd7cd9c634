"""Ground truth and listener reports, joined by message id: the only place accuracy is counted.

The panel registers every message it sends (with its label, when it has one) before sending it. Reports
arrive from the receiver and the eavesdroppers through ``Telemetry.Report``. A report for an unknown message
id is counted as ``unmatched``; a second report for the same (message id, listener) as a ``duplicate``;
neither changes any accuracy, so retransmissions and restarts never double count.

A report with ``lost`` set (the link lost the frame) counts as a report without a correct decision.
Accuracy of a listener = correct / labelled reports (lost ones included in the denominator). An eavesdropper whose
attack returns only reconstructions reports every judge's label (``judge_labels``, docs/design.md §4): its tally
counts each judge's correct decisions too, and its accuracy is the max over its judges (the conservative leakage
figure), with the spread beside it.

Everything lives in the panel's SQLite database (:mod:`control_panel.store`): messages and reports as rows
(pruned by the retention setting), tallies per listener, globally and per run (never pruned, so counts survive
retention and restarts). Memory holds only bounded things: the tallies in use, a window of latencies, the last
reconstructions, and the waiters of in-flight uploads and runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from control_panel.store import Store
from diffsem.leakage import summarise
from protos.diffsem.v1 import common_pb2, telemetry_pb2
from services_common.errors import BadRequest
from services_common.tensors import to_numpy

MAX_RECONSTRUCTIONS = 2_000  # 28x28 float32 each: about 6 MB
LATENCY_WINDOW = 2_000
MAX_CACHED_TALLIES = 4_096
GLOBAL = ""  # the tally scope of all messages; a run's scope is its id


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
    judge_labels: dict[str, int] = field(default_factory=dict)  # judge name -> its label of the reconstruction
    threat_model: str = ""  # an eavesdropper's attack's (query, white-box, none)

    def as_json(self, truth: int | None, message_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "lost": self.lost, "method": self.method,
                               "latency_ms": round(self.latency_ms, 3), "abar_eff": self.abar_eff,
                               "error": self.error or None}
        out["correct"] = None if truth is None or self.lost else self.label == truth
        if self.judge_labels:
            out["judge_labels"] = dict(self.judge_labels)
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
    judges: dict[str, int] = field(default_factory=dict)  # judge name -> correct decisions (judged listeners only)
    threat_model: str | None = None  # an eavesdropper's attack's, as it reports it
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @classmethod
    def from_row(cls, role: str, method: str, reports: int, labelled: int, correct: int, lost: int,
                 last_error: str | None, judges: str | None, threat_model: str | None = None) -> Tally:
        return cls(role, method, reports, labelled, correct, lost, last_error, json.loads(judges) if judges else {},
                   threat_model)

    def add(self, o: Outcome, truth: int | None) -> None:
        self.role, self.method = o.role, o.method
        self.threat_model = o.threat_model or self.threat_model
        self.reports += 1
        self.lost += o.lost
        if o.error:
            self.last_error = o.error
        if truth is not None:
            self.labelled += 1
            self.correct += (not o.lost) and o.label == truth
            for judge, label in o.judge_labels.items():
                self.judges[judge] = self.judges.get(judge, 0) + ((not o.lost) and label == truth)
        if not o.lost:
            self.latencies.append(o.latency_ms)

    def judge_accuracy(self) -> dict[str, float]:
        """Each judge's accuracy over the labelled reports (empty for a listener that decides labels itself)."""
        return {j: c / self.labelled for j, c in sorted(self.judges.items())} if self.labelled else {}

    @property
    def accuracy(self) -> float | None:
        """correct / labelled; for a judged listener the max over its judges (docs/design.md §4)."""
        if not self.labelled:
            return None
        per = self.judge_accuracy()
        return max(self.correct / self.labelled, summarise(per)["max"]) if per else self.correct / self.labelled

    def as_json(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies) if self.latencies else None
        out = {"role": self.role, "method": self.method, "reports": self.reports, "labelled": self.labelled,
               "correct": self.correct, "lost": self.lost, "last_error": self.last_error,
               "accuracy": self.accuracy, "threat_model": self.threat_model,
               "latency_ms_p50": float(np.percentile(lat, 50)) if lat is not None else None,
               "latency_ms_p99": float(np.percentile(lat, 99)) if lat is not None else None}
        if per := self.judge_accuracy():
            summary = summarise(per)
            out |= {"judges": per, "judged_max": summary["max"], "judged_spread": summary["spread"]}
        return out


class Tallies:
    """The tallies table with a write-back cache: updated in memory, written at the end of each transaction."""

    def __init__(self, store: Store):
        self.store = store
        self.cache: dict[tuple[str, str], Tally] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.active: set[str] = {GLOBAL}  # scopes kept in memory (the global one and running runs)
        for t in self._rows(GLOBAL):
            self.cache[(GLOBAL, t[0])] = t[1]

    def _rows(self, scope: str) -> list[tuple[str, Tally]]:
        rows = self.store.conn.execute("SELECT listener, role, method, reports, labelled, correct, lost, last_error, "
                                       "judges, threat_model FROM tallies WHERE scope=?", (scope,)).fetchall()
        return [(r[0], Tally.from_row(*r[1:])) for r in rows]

    def get(self, scope: str, listener: str) -> Tally:
        key = (scope, listener)
        t = self.cache.get(key)
        if t is None:
            row = self.store.conn.execute("SELECT role, method, reports, labelled, correct, lost, last_error, judges, "
                                          "threat_model FROM tallies WHERE scope=? AND listener=?", key).fetchone()
            t = self.cache[key] = Tally.from_row(*row) if row else Tally()
        self.dirty.add(key)
        return t

    def of(self, scope: str) -> dict[str, Tally]:
        """Every listener's tally in ``scope`` (the cached ones are the newest)."""
        out = {} if scope == GLOBAL else dict(self._rows(scope))
        out.update({k[1]: t for k, t in self.cache.items() if k[0] == scope})
        return dict(sorted(out.items()))

    def flush(self) -> None:
        """Inside a transaction: write the changed tallies; evict the idle ones when the cache is large."""
        self.store.conn.executemany(
            "INSERT INTO tallies(scope, listener, role, method, reports, labelled, correct, lost, last_error, judges, "
            "threat_model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(scope, listener) DO UPDATE SET "
            "role=excluded.role, method=excluded.method, reports=excluded.reports, labelled=excluded.labelled, "
            "correct=excluded.correct, lost=excluded.lost, last_error=excluded.last_error, judges=excluded.judges, "
            "threat_model=excluded.threat_model",
            [(*k, t.role, t.method, t.reports, t.labelled, t.correct, t.lost, t.last_error,
              json.dumps(t.judges) if t.judges else None, t.threat_model) for k in self.dirty for t in (self.cache[k],)])
        self.dirty.clear()
        if len(self.cache) > MAX_CACHED_TALLIES:
            self.cache = {k: t for k, t in self.cache.items() if k[0] in self.active}


@dataclass
class Pending:
    """An upload waiting for the receiver's decision and every expected listener's report."""

    legit: str
    expected: set[str]
    seen: set[str] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, listener: str) -> None:
        self.seen.add(listener)
        if self.legit in self.seen and self.expected <= self.seen:
            self.done.set()


@dataclass
class RunWatch:
    """What a running run needs from the reports: decided indices and each listener's last report time."""

    legit: str
    decided: set[int] = field(default_factory=set)  # indices the legitimate listener has decided, not yet drained
    last_report: dict[str, float] = field(default_factory=dict)  # listener -> time.monotonic()
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, listener: str, idx: int) -> None:
        self.last_report[listener] = time.monotonic()
        if listener == self.legit:
            self.decided.add(idx)
        self.progress.set()


class Ledger:
    """Messages, reports and tallies in the store. Used from the panel's event loop only (no locking needed)."""

    def __init__(self, store: Store, legit: str = "receiver"):
        self.store = store
        self.legit = legit
        self.tallies = Tallies(store)
        counters = store.counters()
        self.sent = counters.get("sent", 0)
        self.unmatched = counters.get("unmatched", 0)
        self.duplicates = counters.get("duplicates", 0)
        self.reconstructions: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self.pending: dict[str, Pending] = {}
        self.watches: dict[str, RunWatch] = {}

    def _counters(self) -> dict[str, int]:
        return {"sent": self.sent, "unmatched": self.unmatched, "duplicates": self.duplicates}

    def register(self, message_id: str, label: int | None, expected: set[str]) -> Pending:
        """Record one upload before it is sent; its waiter. Raises BadRequest on an id already in use."""
        with self.store.transaction() as c:
            if c.execute("SELECT 1 FROM messages WHERE id=?", (message_id,)).fetchone():
                raise BadRequest(f"message id {message_id!r} is already in use")
            c.execute("INSERT INTO messages(id, label, created, expected) VALUES (?, ?, ?, ?)",
                      (message_id, label, time.time(), json.dumps(sorted(expected))))
            self.sent += 1
            self.store.save_counters(self._counters())
        self.pending[message_id] = pending = Pending(self.legit, set(expected))
        return pending

    def register_run(self, run_id: str, indices: list[int], labels: list[int]) -> list[str]:
        """Record a run's messages (ids ``<run>-<index>``) in one transaction; their ids."""
        ids = [f"{run_id}-{i}" for i in indices]
        created = time.time()
        with self.store.transaction() as c:
            c.executemany("INSERT INTO messages(id, label, run_id, idx, created) VALUES (?, ?, ?, ?, ?)",
                          [(m, lab, run_id, i, created) for m, i, lab in zip(ids, indices, labels, strict=True)])
            self.sent += len(ids)
            self.store.save_counters(self._counters())
        return ids

    def report(self, reports: list[telemetry_pb2.Report]) -> dict[str, int]:
        """Join a batch of reports in one transaction: counts of ``accepted``, ``unmatched`` and ``duplicate``."""
        counts = {"accepted": 0, "unmatched": 0, "duplicate": 0}
        with self.store.transaction():
            for r in reports:
                counts[self._join(r)] += 1
            self.tallies.flush()
            self.store.save_counters(self._counters())
        return counts

    def _join(self, r: telemetry_pb2.Report) -> str:
        c = self.store.conn
        row = c.execute("SELECT seq, label, run_id, idx FROM messages WHERE id=?", (r.message_id,)).fetchone()
        if row is None:
            self.unmatched += 1
            return "unmatched"
        seq, truth, run_id, idx = row
        role = "legitimate" if r.role == common_pb2.ROLE_LEGITIMATE else "eavesdropper"
        # the panel's telemetry door has checked every field's bound (control_panel/telemetry.py)
        o = Outcome(r.listener, role, r.method, r.label if r.has_label and not r.lost else None, r.lost,
                    r.latency_ms, r.abar_eff, False, r.error, dict(r.judge_labels), r.threat_model)
        img = to_numpy(r.reconstruction, "reconstruction").reshape(28, 28) if r.HasField("reconstruction") else None
        o.has_reconstruction = img is not None
        inserted = c.execute("INSERT OR IGNORE INTO outcomes(seq, listener, role, method, label, lost, latency_ms, "
                             "abar_eff, error, reconstruction, judges) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (seq, o.listener, o.role, o.method, o.label, o.lost, o.latency_ms, o.abar_eff, o.error,
                              o.has_reconstruction, json.dumps(o.judge_labels) if o.judge_labels else None)).rowcount
        if not inserted:
            self.duplicates += 1
            return "duplicate"
        if img is not None:
            self.reconstructions[(r.message_id, r.listener)] = img
            while len(self.reconstructions) > MAX_RECONSTRUCTIONS:
                self.reconstructions.popitem(last=False)
        self.tallies.get(GLOBAL, r.listener).add(o, truth)
        if run_id is not None:
            self.tallies.get(run_id, r.listener).add(o, truth)
            watch = self.watches.get(run_id)
            if watch is not None:
                watch.saw(r.listener, idx)
        pending = self.pending.get(r.message_id)
        if pending is not None:
            pending.saw(r.listener)
        return "accepted"

    # ---- runs ----------------------------------------------------------------------------------------------
    def watch(self, run_id: str) -> RunWatch:
        self.tallies.active.add(run_id)
        self.watches[run_id] = watch = RunWatch(self.legit)
        return watch

    def unwatch(self, run_id: str) -> None:
        self.watches.pop(run_id, None)
        self.tallies.active.discard(run_id)

    def forget_run(self, run_id: str) -> None:
        """Delete a finished run's messages, reports and tallies (the global counts keep them)."""
        with self.store.transaction() as c:
            c.execute("DELETE FROM outcomes WHERE seq IN (SELECT seq FROM messages WHERE run_id=?)", (run_id,))
            c.execute("DELETE FROM messages WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM tallies WHERE scope=?", (run_id,))
        self.tallies.cache = {k: t for k, t in self.tallies.cache.items() if k[0] != run_id}

    # ---- reads ---------------------------------------------------------------------------------------------
    def message_json(self, message_id: str) -> dict[str, Any] | None:
        c = self.store.conn
        row = c.execute("SELECT seq, label, run_id, expected FROM messages WHERE id=?", (message_id,)).fetchone()
        if row is None:
            return None
        seq, truth, run_id, expected = row
        outcomes = {r[0]: Outcome(*r[:-1], json.loads(r[-1]) if r[-1] else {}) for r in c.execute(
            "SELECT listener, role, method, label, lost != 0, latency_ms, abar_eff, reconstruction != 0, error, judges "
            "FROM outcomes WHERE seq=? ORDER BY listener", (seq,))}
        for name, o in outcomes.items():
            o.has_reconstruction &= (message_id, name) in self.reconstructions  # not evicted, not lost at a restart
        legit = outcomes.get(self.legit)
        return {"message_id": message_id, "label": truth, "run_id": run_id,
                "receiver": legit.as_json(truth, message_id) if legit else None,
                "eavesdroppers": {name: {**o.as_json(truth, message_id), "attack": o.method}
                                  for name, o in outcomes.items() if name != self.legit},
                "missing": sorted(set(json.loads(expected or "[]")) - outcomes.keys())}

    def summary(self) -> dict[str, Any]:
        return {"messages": self.sent, "unmatched_reports": self.unmatched, "duplicate_reports": self.duplicates,
                "listeners": {name: t.as_json() for name, t in self.tallies.of(GLOBAL).items()}}
