"""What each service of the live stack costs, for sizing Kubernetes requests and limits (deploy/k8s/): peak resident
memory (VmHWM) and CPU seconds per 100 frames, per service, over a test-set run through the launcher's stack with
one eavesdropper of each built-in attack.

    .venv/bin/python benchmarks/footprint.py [--n 500] [--out out/bench-footprint.json]

CPU seconds are the processes' own (utime + stime), so a loaded machine slows the run but does not inflate them
much; memory peaks are what the limits must cover.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from control_panel.client import wait_run  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402

EVES = {"eve-feature": "feature-classifier", "eve-inversion": "inversion-decoder", "eve-adaptive": "adaptive-diffusion",
        "eve-whitebox": "whitebox-inversion"}


def usage(pid: int) -> tuple[float, float]:
    """(peak RSS in MiB, CPU seconds) of a process."""
    hwm = next(int(ln.split()[1]) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return hwm / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench-footprint.json")
    args = p.parse_args()
    cfg = StackConfig.ephemeral(checkpoints=checkpoint_dir("mnist"), device="cpu",
                                eavesdroppers=[EveSpec(n, a, 0.0) for n, a in EVES.items()],
                                reads_transmitter_weights=("eve-whitebox",))
    with Stack(cfg) as stack:
        idle = {name: usage(s.proc.pid) for name, s in stack.services.items()}
        started = time.perf_counter()
        with httpx.Client(base_url=stack.http_url, timeout=60) as c:
            run_id = c.post("/api/runs", json={"n": args.n, "batch_size": 50, "report_deadline_s": 600}).json()["id"]
            run = wait_run(c, run_id, timeout=3600, poll_s=1.0)
        wall = time.perf_counter() - started
        busy = {name: usage(s.proc.pid) for name, s in stack.services.items()}
    out = {"n": args.n, "wall_s": round(wall, 1), "decided": run["decided"],
           "load": Path("/proc/loadavg").read_text().split()[:3],
           "services": {name: {"peak_rss_mib": round(busy[name][0], 1), "idle_rss_mib": round(idle[name][0], 1),
                               "cpu_s_per_100_frames": round(100 * (busy[name][1] - idle[name][1]) / args.n, 2)}
                        for name in busy}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
