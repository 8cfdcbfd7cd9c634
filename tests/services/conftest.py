"""Fixtures for the live-stack tests: real servers on loopback with ephemeral ports, no mocks.

The stack runs the checkpoints in ``checkpoints/mnist`` (override with $DIFFSEM_TEST_CHECKPOINTS while
developing; the accuracy test then skips because its threshold is for the committed checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from svc_helpers import LiveStack, checkpoints_path, start_stack, stop_stack


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
    stack = start_stack(checkpoints, tmp_path_factory.mktemp("stack"), "-e", "eve:feature-classifier:0",
                        "--receiver-threads", "2")
    yield stack
    pids = [s["pid"] for s in stack.state["services"].values()]
    assert stop_stack(stack) == 0, stack.out_path.read_text()[-3000:]
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    assert not alive, f"services still running after the launcher stopped: {alive}"
