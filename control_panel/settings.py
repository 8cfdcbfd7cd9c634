"""The panel's settings: addresses, credentials, storage and limits (``python -m control_panel --help``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from control_panel.store import MEMORY
from diffsem.imageio import MAX_BYTES

ROOT = Path(__file__).resolve().parents[1]
HEADLINE_RESULTS = ROOT / "docs" / "results" / "mnist-headline" / "results.json"  # the committed MNIST headline
JUDGING_POOLS = ROOT / "docs" / "results" / "judging" / "pools"  # the committed judging pools


@dataclass
class PanelSettings:
    """Addresses and limits. ``telemetry_port`` 0 = ephemeral (read it from ``PanelState.telemetry_port``)."""

    transmitter: str = "127.0.0.1:50051"
    emulator: str = "127.0.0.1:50052"
    telemetry_host: str = "127.0.0.1"
    telemetry_port: int = 50060
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
