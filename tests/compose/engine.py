"""A real container engine for the compose tests, and docker-compose pointed at it.

Docker Engine when ``docker info`` works. Otherwise Podman (Debian's ``podman`` and ``runc``; scripts/setup installs
them) serving its Docker-compatible API on a socket in a temporary folder, with its configuration there too
(``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``; never the global files), for Debian's docker-compose 1.29:

- ``runtime = "runc"`` (crun refuses this machine's hybrid cgroups), ``cgroup_manager = "cgroupfs"`` and
  ``events_logger = "file"`` (no systemd), capped ``default_ulimits`` (no CAP_SYS_RESOURCE);
- image layers in :data:`PODMAN_STORE` (outside the repository), so a second run reuses the built image; run state
  in :data:`PODMAN_RUN` on tmpfs, which a reboot clears as Podman expects;
- without systemd Podman never runs healthchecks itself, so :class:`HealthLoop` runs ``podman healthcheck run`` for
  each running container: every :data:`STARTING_EVERY` seconds until it is healthy, then at its own interval. That
  is what makes ``depends_on: condition: service_healthy`` work. It remembers when each container's first passing
  check started (the engine's health log keeps only the last five).

One harness at a time per store (a lock file); :meth:`Engine.close` removes every container, pod, network and
volume it made and stops the API service.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

PODMAN_STORE = Path(os.environ.get("DIFFSEM_PODMAN_STORE", "/var/tmp/diffsem-podman"))
PODMAN_RUN = Path("/dev/shm/diffsem-podman")
STARTING_EVERY = 3.0  # seconds between checks of a container that is not healthy yet
LOCK_WAIT = 1800.0  # seconds to wait for another harness on the same store

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{tmp}/events.log"
tmp_dir = "{run}/tmp"

[network]
network_config_dir = "{tmp}/networks"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{store}/storage"
runroot = "{run}/run"
"""


class EngineUnavailable(Exception):
    """No container engine can run here; the message says what is missing."""


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120, check: bool = False,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
    return done


@dataclass
class HealthLoop:
    """Run ``podman healthcheck run`` on every running container that has a healthcheck (see the module doc)."""

    env: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    next_due: dict[str, float] = field(default_factory=dict)
    first_healthy: dict[str, float] = field(default_factory=dict)  # container id -> epoch seconds its check began

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._loop, name="podman-health", daemon=True)
        thread.start()
        return thread

    def _containers(self) -> list[tuple[str, float]]:
        """(id, interval in seconds) of the running containers with a healthcheck."""
        ids = _run(["podman", "ps", "-q", "--no-trunc"], self.env).stdout.split()
        if not ids:
            return []
        out = []
        for c in json.loads(_run(["podman", "inspect", *ids], self.env).stdout or "[]"):
            hc = (c.get("Config") or {}).get("Healthcheck") or {}
            if hc.get("Test") and hc["Test"] != ["NONE"]:
                out.append((c["Id"], (hc.get("Interval") or 30e9) / 1e9))
        return out

    def _check(self, cid: str, interval: float) -> None:
        began = time.time()
        done = _run(["podman", "healthcheck", "run", cid], self.env, timeout=60)
        healthy = done.returncode == 0
        if healthy:
            self.first_healthy.setdefault(cid, began)
        self.next_due[cid] = time.monotonic() + (interval if healthy else STARTING_EVERY)

    def _loop(self) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            while not self.stop.wait(1.0):
                with contextlib.suppress(subprocess.SubprocessError, json.JSONDecodeError, OSError):
                    now = time.monotonic()
                    due = [(c, i) for c, i in self._containers() if self.next_due.get(c, 0.0) <= now]
                    for cid, _ in due:
                        self.next_due[cid] = now + 3600  # not again until this check is back
                    list(pool.map(lambda ci: self._check(*ci), due))


@dataclass
class Engine:
    """A running engine: ``env`` is what docker-compose and the engine's own CLI need."""

    kind: str  # "docker" or "podman"
    env: dict[str, str]
    compose_cmd: list[str]
    tmp: Path | None = None
    service: subprocess.Popen[bytes] | None = None
    health: HealthLoop | None = None
    lock: int | None = None

    @property
    def cli(self) -> str:
        return self.kind

    def engine(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the engine's own CLI (``podman ...`` or ``docker ...``)."""
        return _run([self.cli, *args], self.env, timeout=timeout, check=check)

    def close(self) -> None:
        """Remove whatever is left (containers, pods, networks, volumes), stop the API service, release the lock."""
        if self.kind == "podman":
            if self.health is not None:
                self.health.stop.set()
            _remove_everything(self.env)
            if self.service is not None:
                os.killpg(self.service.pid, signal.SIGTERM)
                try:
                    self.service.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.service.pid, signal.SIGKILL)
                    self.service.wait(timeout=30)
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
        if self.lock is not None:
            os.close(self.lock)


def _remove_everything(env: dict[str, str]) -> None:
    for args in (["rm", "--all", "--force", "--time", "0"], ["pod", "rm", "--all", "--force"],
                 ["network", "prune", "--force"], ["volume", "prune", "--force"]):
        _run(["podman", *args], env, timeout=180)


def _docker() -> Engine | None:
    if shutil.which("docker") is None or _run(["docker", "info"], timeout=30).returncode != 0:
        return None
    plugin = _run(["docker", "compose", "version"], timeout=30).returncode == 0
    compose = ["docker", "compose"] if plugin else [shutil.which("docker-compose") or "docker-compose"]
    return Engine("docker", dict(os.environ), compose)


def _podman_env(tmp: Path) -> dict[str, str]:
    (tmp / "containers.conf").write_text(CONTAINERS_CONF.format(tmp=tmp, run=PODMAN_RUN))
    (tmp / "storage.conf").write_text(STORAGE_CONF.format(store=PODMAN_STORE, run=PODMAN_RUN))
    (tmp / "networks").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERS_", "COMPOSE_"))}
    return env | {"CONTAINERS_CONF": str(tmp / "containers.conf"),
                  "CONTAINERS_STORAGE_CONF": str(tmp / "storage.conf"),
                  "DOCKER_HOST": f"unix://{tmp}/podman.sock"}


def _wait_for_socket(env: dict[str, str], service: subprocess.Popen[bytes], deadline: float) -> None:
    sock = env["DOCKER_HOST"].removeprefix("unix://")
    while True:
        ping = _run(["curl", "-sf", "--unix-socket", sock, "http://d/_ping"], timeout=10)
        if ping.returncode == 0:
            return
        if service.poll() is not None or time.monotonic() > deadline:
            raise EngineUnavailable(f"podman system service did not answer on {sock} (exit {service.poll()})")
        time.sleep(0.2)


def _podman() -> Engine:
    missing = [t for t in ("podman", "runc", "docker-compose", "curl") if shutil.which(t) is None]
    if missing:
        raise EngineUnavailable(f"no Docker engine, and {', '.join(missing)} missing for Podman (scripts/setup installs them)")
    PODMAN_STORE.mkdir(parents=True, exist_ok=True)
    lock = os.open(PODMAN_STORE / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(lock)
                raise EngineUnavailable(f"another compose test holds {PODMAN_STORE}/lock") from None
            time.sleep(2)
    tmp = Path(tempfile.mkdtemp(prefix="diffsem-engine-"))
    env = _podman_env(tmp)
    engine = Engine("podman", env, [shutil.which("docker-compose") or "docker-compose"], tmp=tmp, lock=lock)
    try:
        info = _run(["podman", "info", "--format", "json"], env, timeout=120)
        if info.returncode != 0:
            raise EngineUnavailable(f"podman cannot run here: {info.stderr.strip()[-500:]}")
        _remove_everything(env)  # what a killed earlier run may have left
        engine.service = subprocess.Popen(["podman", "system", "service", "--time=0", env["DOCKER_HOST"]], env=env,
                                          stdout=subprocess.DEVNULL, stderr=open(tmp / "service.log", "wb"),
                                          start_new_session=True)
        _wait_for_socket(env, engine.service, time.monotonic() + 60)
        engine.health = HealthLoop(env)
        engine.health.start()
    except BaseException:
        engine.close()
        raise
    return engine


@contextlib.contextmanager
def container_engine() -> Iterator[Engine]:
    """Docker Engine if it answers, else a Podman harness; cleaned up on exit. Raises EngineUnavailable."""
    engine = _docker() or _podman()
    try:
        yield engine
    finally:
        engine.close()


@contextlib.contextmanager
def engine_or_skip() -> Iterator[Engine]:
    """:func:`container_engine` for a compose test's fixture: where no engine can run (EngineUnavailable), skip with
    the reason, or fail under CI (CI=true), which must run the compose tests."""
    import pytest  # here, not at the top: benchmarks/compose_eavesdroppers.py uses this harness without pytest

    try:
        with container_engine() as engine:
            yield engine
    except EngineUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs a container engine for the compose test: {exc}")
        pytest.skip(f"no container engine: {exc}")
