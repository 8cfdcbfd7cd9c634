"""Client-side helpers for the panel's HTTP API (benchmarks and tests use them)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx is a dev dependency; the services never import this module
    import httpx

FINISHED = ("done", "failed", "cancelled", "interrupted")


def wait_run(client: httpx.Client, run_id: str, timeout: float = 1800.0, poll_s: float = 0.2) -> dict[str, Any]:
    """Poll ``GET /api/runs/{run_id}`` until the run has finished; return its JSON. TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        run = client.get(f"/api/runs/{run_id}").json()
        if run["status"] in FINISHED:
            return run
        time.sleep(poll_s)
    raise TimeoutError(f"run {run_id} not finished after {timeout} s: {run}")
