"""The panel's settings: addresses, credentials, storage and limits, and its spec (``python -m control_panel --help``,
the launcher's argv and the environment variables; docs/design.md §5, "One service skeleton").

A setting's default is written once, as a :class:`PanelSettings` field; the spec's options that set one take it from
there (:func:`_default`).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from control_panel.store import MEMORY, default_db_path
from diffsem.imageio import MAX_BYTES
from services_common.spec import DEFAULT_PORTS, Option, ServiceSpec, local_address

ROOT = Path(__file__).resolve().parents[1]
HEADLINE_RESULTS = ROOT / "docs" / "results" / "mnist-headline" / "results.json"  # the committed MNIST headline
JUDGING_POOLS = ROOT / "docs" / "results" / "judging" / "pools"  # the committed judging pools


@dataclass
class PanelSettings:
    """Addresses and limits. ``telemetry_port`` 0 = ephemeral (read it from ``PanelState.telemetry_port``)."""

    transmitter: str = local_address("transmitter")
    emulator: str = local_address("channel_emulator")
    telemetry_host: str = "127.0.0.1"
    telemetry_port: int = DEFAULT_PORTS["telemetry"]
    legit: str = "receiver"
    max_upload_bytes: int = MAX_BYTES
    transmit_timeout_s: float = 10.0
    token: str | None = None  # bearer token required by the mutating endpoints (None: no check)
    sweep_file: Path | None = field(default_factory=lambda: HEADLINE_RESULTS)  # `diffsem eval` results.json
    judging_pools: Path | None = field(default_factory=lambda: JUDGING_POOLS)  # `diffsem attack eval --pools` folder
    credential: str | None = None  # this panel's control-role credential for its gRPC calls (services_common/auth.py)
    auth_key: bytes | None = None  # the authority key that verifies the listeners' telemetry (None: not verified)
    db: str = MEMORY  # the SQLite database (the command line's default is store.default_db_path())
    retention_messages: int = 1_000_000  # messages (and their reports) kept; tallies keep every count
    prune_every_s: float = 30.0  # how often the retention setting is applied
    max_runs: int = 4  # runs and sweeps in flight at once (429 past it)
    max_uploads: int = 16  # POST /api/transmit in flight at once (429 past it)
    max_json_bytes: int = 1 << 20  # any request body but an upload (413 past it)
    body_timeout_s: float = 10.0  # a request body must arrive within this (408)


def _default(name: str) -> Any:
    f = next(f for f in fields(PanelSettings) if f.name == name)
    return f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]


SPEC = ServiceSpec("control_panel", "The HTTP API + dashboard and the Telemetry gRPC server, in one process.", (
    Option("--host", "bind address (HTTP and telemetry)", "127.0.0.1"),
    Option("--http-port", "HTTP port (0 = ephemeral)", DEFAULT_PORTS["http"], int),
    Option("--telemetry-port", "Telemetry gRPC port (0 = ephemeral)", _default("telemetry_port"), int),
    Option("--port-file", "write the bound ports here as JSON", None, Path),
    Option("--transmitter", "transmitter address", _default("transmitter")),
    Option("--emulator", "channel emulator address", _default("emulator")),
    Option("--legit-name", "the legitimate listener's name", _default("legit")),
    Option("--max-upload-bytes", "an upload's size (413 past it)", _default("max_upload_bytes"), int),
    Option("--transmit-timeout-s", "POST /api/transmit waits this long for the decision (504 past it)",
           _default("transmit_timeout_s"), float),
    Option("--sweep-file", "a `diffsem eval` results.json for the dashboard's accuracy-vs-SNR chart (default: the "
                           "committed docs/results/mnist-headline/results.json)", None, Path),
    Option("--judging-pools", "folder of judging pools for the 'Judge it yourself' page (default: the committed "
                              "docs/results/judging/pools; make more with `diffsem attack eval --pools`)", None, Path),
    Option("--credential-file", "this panel's control credential for its gRPC calls"),
    Option("--auth-key-file", "authority key that verifies the listeners' telemetry"),
    Option("--db", "SQLite database of messages, counts, runs and sweeps (':memory:' keeps nothing across restarts)",
           str(default_db_path())),
    Option("--retention-messages", "messages (and their reports) kept in the database; the counts keep every message",
           _default("retention_messages"), int),
    Option("--prune-every-s", "how often the retention setting is applied", _default("prune_every_s"), float),
    Option("--max-connections", "HTTP limit: concurrent connections (503 past it)", 256, int),
    Option("--max-uploads", "HTTP limit: POST /api/transmit in flight (429 past it)", _default("max_uploads"), int),
    Option("--max-runs", "HTTP limit: runs and sweeps in flight (429 past it)", _default("max_runs"), int),
    Option("--max-json-bytes", "HTTP limit: a JSON request body (413 past it)", _default("max_json_bytes"), int),
    Option("--max-header-bytes", "HTTP limit: request line and headers (431 past it)", 16 * 1024, int),
    Option("--body-timeout-s", "HTTP limit: time to send a request body (408)", _default("body_timeout_s"), float),
    Option("--header-timeout-s", "HTTP limit: time to send a request head (408)", 10.0, float),
    Option("--allow-remote", "bind a non-loopback --host even without $DIFFSEM_PANEL_TOKEN (containers whose "
                             "published port is itself on loopback)", kind="flag"),
))
