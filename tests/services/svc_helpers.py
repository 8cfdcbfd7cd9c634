"""Shared helpers of the live-stack tests (paths, the launched stack, test images)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from control_panel.client import wait_run

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DEFAULT_CHECKPOINTS = ROOT / "checkpoints" / "mnist"
if "DIFFSEM_DATA_DIR" not in os.environ and (ROOT / "data" / "mnist").is_dir():
    os.environ["DIFFSEM_DATA_DIR"] = str(ROOT / "data")


def checkpoints_path() -> Path:
    return Path(os.environ.get("DIFFSEM_TEST_CHECKPOINTS", DEFAULT_CHECKPOINTS))


def eavesdropper_folder(checkpoints: Path, dest: Path) -> Path:
    """Copy what a black-box eavesdropper may read (as docker-compose.yml mounts it) into ``dest``: bundle.json, its
    own parts and the judge, and attacks/; not the transmitter's encoder or the receiver's models."""
    import shutil

    from diffsem.bundle import EAVESDROPPER_PARTS

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoints / "bundle.json", dest)
    for part in EAVESDROPPER_PARTS:
        for suffix in (".safetensors", ".json"):
            shutil.copy(checkpoints / f"{part}{suffix}", dest)
    for folder in ("attacks", "judges"):  # its attacks and the panel of judges
        if (checkpoints / folder).is_dir():
            shutil.copytree(checkpoints / folder, dest / folder, dirs_exist_ok=True)
    return dest


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass
class LiveStack:
    """A stack started by ``python -m launcher --ports 0``: URLs, addresses and pids from its state file."""

    proc: subprocess.Popen
    state_file: Path
    checkpoints: Path
    out_path: Path

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text())

    @property
    def url(self) -> str:
        return self.state["urls"]["dashboard"].rstrip("/")

    def address(self, service: str, key: str = "grpc") -> str:
        return f"127.0.0.1:{self.state['services'][service]['ports'][key]}"

    def pid(self, service: str) -> int:
        return self.state["services"][service]["pid"]

    def credential(self, role: str, name: str | None = None) -> str:
        """A credential of this stack (signed with its authority key, as the launcher's are)."""
        from services_common import auth

        key = auth.read_key(Path(self.state["auth_dir"]) / "authority.key")
        return auth.issue(key, role, name or role)

    def credential_file(self, role: str, name: str, folder: Path) -> Path:
        """``credential(role, name)`` in a 0600 file under ``folder`` (for a process the test starts)."""
        path = folder / f"{name}.credential"
        path.write_text(self.credential(role, name))
        path.chmod(0o600)
        return path

    def grpc(self, service: str, role: str = "control", key: str = "grpc", name: str | None = None) -> Any:
        """A gRPC connection to ``service`` carrying this stack's credential of ``role`` (named ``name``)."""
        from services_common.client import grpc_channel

        return grpc_channel(self.address(service, key), self.credential(role, name))

    def http(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def wait_run(self, run_id: str, timeout: float = 180.0) -> dict[str, Any]:
        with self.http() as c:
            return wait_run(c, run_id, timeout, poll_s=0.3)



def start_stack(checkpoints: Path, folder: Path, *launcher_args: str, env: dict[str, str] | None = None,
                timeout: float = 300.0) -> LiveStack:
    """``python -m launcher --ports 0`` with ``launcher_args``; returns once its state file is written (every
    service healthy). Fails the test with the launcher's output if it does not come up."""
    import pytest

    out = folder / "launcher.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "--ports", "0", "--checkpoints", str(checkpoints),
             "--state-file", str(folder / "state.json"), "--log-dir", str(folder / "logs"), *launcher_args],
            cwd=ROOT, env=env or child_env(), stdout=log, stderr=subprocess.STDOUT)
    stack = LiveStack(proc, folder / "state.json", checkpoints, out)
    deadline = time.monotonic() + timeout
    while not stack.state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"launcher did not come up:\n{out.read_text()[-3000:]}")
        time.sleep(0.3)
    return stack


def stop_stack(stack: LiveStack) -> int:
    """SIGTERM the launcher; its exit status."""
    import signal

    stack.proc.send_signal(signal.SIGTERM)
    return stack.proc.wait(60)


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def huge_png_header(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG that declares width x height pixels but is a few hundred bytes (no pixel data to decode)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition", poll_s: float = 0.02) -> Any:
    """Poll ``predicate()`` until it returns a truthy value (returned), or fail after ``timeout`` seconds.

    The one way tests wait for a state: no test sleeps a fixed time and then asserts.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(poll_s)
