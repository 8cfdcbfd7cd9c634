"""How long ``python -m launcher`` takes to bring the stack up, and to take it down.

    .venv/bin/python benchmarks/stack_start.py [--repeats 5] [--root .]

Each repeat starts the launcher as a user does (``--ports 0 --device cpu -e eve:feature-classifier:0``, a new
process, so its own imports count), waits for its ``--state-file`` (written once every service is healthy), then
sends SIGTERM and waits for it to exit. ``--root`` runs another checkout's launcher with this interpreter (for a
before/after ratio measured in the same session). Prints a Markdown table and one JSON line; medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_cycle(root: Path, timeout_s: float = 180.0) -> tuple[float, float]:
    """(seconds from spawn to every service healthy, seconds from SIGTERM to the launcher's exit)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        env = os.environ | {"PYTHONPATH": str(root)}
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "launcher", "--ports", "0", "--device", "cpu", "-e",
                                 "eve:feature-classifier:0", "--log-dir", tmp, "--state-file", str(state)],
                                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not state.exists():
            if proc.poll() is not None or time.monotonic() - start > timeout_s:
                proc.kill()
                raise SystemExit(f"the launcher in {root} did not come up; logs in {tmp}")
            time.sleep(0.02)
        up = time.monotonic() - start
        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        if proc.wait(60) != 0:
            raise SystemExit(f"the launcher in {root} exited with {proc.returncode}")
        return up, time.monotonic() - stop


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to run")
    args = p.parse_args()
    cycles = [one_cycle(args.root.resolve()) for _ in range(args.repeats)]
    up = statistics.median(c[0] for c in cycles)
    down = statistics.median(c[1] for c in cycles)
    print(f"| checkout | up (median of {args.repeats}) | down (median) |\n|---|---|---|\n"
          f"| {args.root} | {up:.2f} s | {down:.2f} s |")
    print(json.dumps({"root": str(args.root), "repeats": args.repeats, "up_s": [round(c[0], 2) for c in cycles],
                      "down_s": [round(c[1], 2) for c in cycles], "up_median_s": round(up, 2),
                      "down_median_s": round(down, 2), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}))


if __name__ == "__main__":
    main()
