"""The Dockerfile's COPY lines hold every module the services import, and it installs the runtime lock.

The image itself is built and run by tests/compose/ on a real engine. This fast check replays the build stage's
COPY lines into a temporary folder, imports every service entry point from there, and checks that each of our
modules was loaded from the copy (not from the checkout), so a new package the Dockerfile forgets to copy fails here
without an engine. It also keeps the Dockerfile's bytecode list (what the services import at start-up) equal to
the entry points, and checks that the dependency layer is the runtime lock alone, installed hash-checked from
whichever source the build argument names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = ["transmitter.__main__", "channel_emulator.__main__", "receiver.__main__", "eavesdropper.__main__",
                "control_panel.__main__", "launcher.__main__", "services_common.healthcheck", "services_common.gateway",
                "diffsem.cli"]
PACKAGES = ("diffsem", "protos", "services_common", "transmitter", "channel_emulator", "receiver", "eavesdropper",
            "control_panel", "launcher")


def copied_paths() -> list[str]:
    """Sources of the build stage's COPY lines that land in /src (the project), relative to the context."""
    out = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and parts[-1].startswith("/src/") and not any(p.startswith("--") for p in parts):
            out += parts[1:-1]
    return out


def test_dockerfile_compiles_what_the_services_import() -> None:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")
    match = re.search(r'python -c "import ([^"]+)"', text)
    assert match, "the Dockerfile's bytecode step is gone"
    assert [m.strip() for m in match.group(1).split(",")] == ENTRY_POINTS


def test_dockerfile_copies_everything_the_services_import(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for src in copied_paths():
        (app / src).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / src).is_dir() else shutil.copy)(ROOT / src, app / src)
    probe = ("import importlib, json, sys\n"
             f"for m in {ENTRY_POINTS!r}: importlib.import_module(m)\n"
             f"ours = {{n: getattr(m, '__file__', None) for n, m in sys.modules.items() if n.split('.')[0] in {PACKAGES!r}}}\n"
             "print(json.dumps(ours))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=app, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    files = json.loads(done.stdout.strip().splitlines()[-1])
    outside = {n: f for n, f in files.items() if f and not Path(f).resolve().is_relative_to(app.resolve())}
    assert not outside, f"imported from outside the image's /app (missing COPY?): {outside}"
    assert {p for p in PACKAGES} <= {n.split(".")[0] for n in files}


def test_the_dependency_layer_is_the_runtime_lock_alone_before_any_code() -> None:
    """Code, README and pyproject changes reuse the installed dependencies (layer caching)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    install = next(i for i, line in enumerate(lines) if "diffsem-pip-source install-deps" in line)
    assert lines[install].split()[-2:] == ["/src/requirements.lock", "\\"], lines[install]
    before = [line for line in lines[:install] if line.startswith("COPY") and "/src/" in line]
    assert before == ["COPY requirements.lock /src/"]


@pytest.mark.parametrize(("offline", "index", "calls"), [
    ("1", "https://download.pytorch.org/whl/cpu",
     [["install", "--no-index", "--find-links", "/wheels", "--require-hashes", "-r", "LOCK"]]),
    ("0", "https://download.pytorch.org/whl/cpu",
     [["install", "--require-hashes", "--extra-index-url", "https://download.pytorch.org/whl/cpu", "-r", "LOCK"]]),
    ("0", "https://download.pytorch.org/whl/cu128/",
     [["install", "--require-hashes", "--no-deps", "-r", "NO-TORCH"],
      ["install", "torch==2.13.0+cu128", "--index-url", "https://download.pytorch.org/whl/cu128/"]]),
])
def test_the_build_installs_the_runtime_lock_hash_checked(tmp_path: Path, offline: str, index: str,
                                                           calls: list[list[str]]) -> None:
    """scripts/pip-source install-deps, run with a pip that records its arguments and the requirements it was given.

    The lock's torch is the CPU build; another build's index (the GPU override) gets every other package from the
    lock, hash-checked, and only torch (with what it pulls) from that index.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pip").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {tmp_path}/calls\n'
        'while [ $# -gt 0 ]; do [ "$1" = -r ] && cp "$2" ' f'"{tmp_path}/given.$(wc -l < {tmp_path}/calls)"; shift; done\n')
    (bin_dir / "pip").chmod(0o755)
    lock = ROOT / "requirements.lock"
    done = subprocess.run(["sh", str(ROOT / "scripts" / "pip-source"), "install-deps", str(lock)], capture_output=True,
                          text=True, timeout=60, env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "PIP_OFFLINE": offline,
                                                      "TORCH_INDEX_URL": index})
    assert done.returncode == 0, done.stderr
    made = [line.split() for line in (tmp_path / "calls").read_text().splitlines()]
    assert made == [[{"LOCK": str(lock), "NO-TORCH": made[0][-1]}.get(a, a) for a in call] for call in calls]
    pins = re.findall(r"(?m)^\S+==\S+", lock.read_text())
    given = re.findall(r"(?m)^\S+==\S+", (tmp_path / "given.1").read_text())
    assert given == ([p for p in pins if not p.startswith("torch==")] if "NO-TORCH" in calls[0] else pins)
    if "cu128" in index:
        assert "torch 2.13.0+cu128 and what it pulls from" in done.stderr and "are not in the lock" in done.stderr
