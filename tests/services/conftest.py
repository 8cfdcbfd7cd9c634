"""Fixtures for the live-stack tests: real servers on loopback with ephemeral ports, no mocks.

The stack runs the checkpoints in ``checkpoints/mnist`` (override with $DIFFSEM_TEST_CHECKPOINTS while
developing; the accuracy test then skips because its threshold is for the committed checkpoints).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from svc_helpers import ROOT, LiveStack, checkpoints_path, child_env


@pytest.fixture(scope="session")
def checkpoints() -> Path:
    path = checkpoints_path()
    if not (path / "bundle.json").exists():
        pytest.fail(f"no checkpoint bundle at {path}: the live-stack tests need the committed checkpoints/mnist "
                    "(or $DIFFSEM_TEST_CHECKPOINTS)")
    return path


@pytest.fixture(scope="session")
def live(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> LiveStack:
    """The whole stack with one eavesdropper ``eve`` (same SNR as the legitimate link).

    Teardown checks the launcher's contract: SIGTERM stops every service and the launcher exits 0.
    """
    d = tmp_path_factory.mktemp("stack")
    out = d / "launcher.out"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher", "--ports", "0", "--checkpoints", str(checkpoints),
             "--state-file", str(d / "state.json"), "--log-dir", str(d / "logs"), "-e", "eve:feature-classifier:0",
             "--receiver-threads", "2"], cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT)
    stack = LiveStack(proc, d / "state.json", checkpoints, out)
    deadline = time.monotonic() + 300
    while not stack.state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"launcher did not come up:\n{out.read_text()[-3000:]}")
        time.sleep(0.3)
    yield stack
    pids = [s["pid"] for s in stack.state["services"].values()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, out.read_text()[-3000:]
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"services still running after the launcher stopped: {alive}"
