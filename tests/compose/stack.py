"""docker-compose commands run as a user runs them, against the harness's engine (tests/compose/engine.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.compose.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE_TAG = "localhost/diffsem-base:bookworm"
CUSTOM = ["-f", "docker-compose.yml", "-f", "docker-compose.custom-attack.yml"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


@dataclass
class Stack:
    """One compose project: its name, its environment (ports, data seed, base image) and the engine."""

    engine: Engine
    project: str
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DIFFSEM_HTTP_PORT']}"

    def compose(self, *args: str, files: list[str] | None = None, env: dict[str, str] | None = None,
                timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker-compose [-f ...] ARGS`` in the repository root, as a user types it."""
        cmd = [*self.engine.compose_cmd, *(files or []), *args]
        full_env = self.engine.env | {"COMPOSE_PROJECT_NAME": self.project} | self.env | (env or {})
        t0 = time.monotonic()
        done = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)
        shown = " ".join(a if len(a) <= 80 else a[:60] + "..." for a in cmd[len(self.engine.compose_cmd):])
        self.log.append(f"[{time.monotonic() - t0:6.1f} s] {shown} -> {done.returncode}")
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return done

    def exec(self, service: str, *cmd: str, files: list[str] | None = None, timeout: float = 120,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *cmd, files=files, timeout=timeout, check=check)

    def inspect(self, service: str) -> dict[str, Any]:
        """The engine's view of the service's (first) container."""
        name = f"{self.project}_{service}_1"
        done = self.engine.engine("inspect", name, check=True)
        return json.loads(done.stdout)[0]

    def health(self, service: str) -> str | None:
        state = self.inspect(service)["State"]
        return (state.get("Health") or state.get("Healthcheck") or {}).get("Status")

    def containers(self) -> list[str]:
        """Names of every container of this project, running or not."""
        done = self.engine.engine("ps", "-a", "--format", "{{.Names}}", check=True)
        return [n for n in done.stdout.split() if n.startswith(f"{self.project}_")]

    def networks(self) -> list[str]:
        done = self.engine.engine("network", "ls", "--format", "{{.Name}}", check=True)
        return [n for n in done.stdout.split() if n.startswith(f"{self.project}_")]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.http_url, timeout=120)

    def run_images(self, n: int, timeout: float = 600, **extra: Any) -> dict[str, Any]:
        """POST /api/runs for ``n`` MNIST test images and poll the run until it is no longer running."""
        with self.http() as c:
            started = c.post("/api/runs", json={"dataset": "mnist", "n": n, **extra})
            assert started.status_code == 202, started.text
            url = started.json()["url"]
            return wait_until(f"run {url} to finish", lambda: (r := c.get(url).json())["status"] not in
                              ("queued", "running") and r, timeout, every=2.0)


def image_env() -> dict[str, str]:
    """The build's settings: our debootstrap base where no registry is reachable, and the offline wheel folder."""
    return {"DIFFSEM_BASE_IMAGE": os.environ.get("DIFFSEM_BASE_IMAGE", BASE_IMAGE_TAG), "DIFFSEM_PIP_OFFLINE": "1"}


def ensure_base_image(engine: Engine) -> None:
    """scripts/base-image (debootstrap + import) when the base is not there yet, with the engine's CLI."""
    if engine.engine("image", "inspect", image_env()["DIFFSEM_BASE_IMAGE"]).returncode == 0:
        return
    done = subprocess.run([str(ROOT / "scripts" / "base-image"), BASE_IMAGE_TAG], cwd=ROOT,
                          env=engine.env | {"ENGINE": engine.cli}, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-5000:]


def wheels_complete() -> bool:
    """Whether wheels/ alone serves the runtime lock, hashes included (pip resolves offline, installs nothing)."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                           "--no-index", "--find-links", str(ROOT / "wheels"), "--require-hashes",
                           "-r", str(ROOT / "requirements.lock")], capture_output=True, timeout=300)
    return done.returncode == 0


def ensure_wheels() -> None:
    """scripts/wheels when wheels/ cannot serve the runtime lock (a fresh clone, or a refreshed lock)."""
    if wheels_complete():
        return
    done = subprocess.run([str(ROOT / "scripts" / "wheels")], cwd=ROOT, env=dict(os.environ) | {"PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-5000:]
