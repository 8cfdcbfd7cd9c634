"""The Dockerfile's COPY lines hold every module the services import.

The image itself is built and run by tests/compose/ on a real engine. This fast check replays the build stage's
COPY lines into a temporary folder, imports every service entry point from there, and checks that each of our
modules was loaded from the copy (not from the checkout), so a new package the Dockerfile forgets to copy fails here
without an engine. It also keeps the Dockerfile's bytecode list (what the services import at start-up) equal to
the entry points.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
