"""The panel's SQLite ledger: write throughput against an in-memory database, and the panel's memory at scale.

    .venv/bin/python benchmarks/ledger.py [--messages 500000] [--marks 100000,250000,500000] [--live-n 2000]
        [--skip-live]

1. **Panel capacity and memory**: a real panel process (``python -m control_panel``) in front of stand-in upstreams
   that report every message at once as a receiver and one eavesdropper (``tests/services/panel_fakes.py``), so the
   panel's bookkeeping is the bottleneck. Test-set runs of 10,000 images until ``--messages`` messages; reported:
   messages/s with the database on disk (WAL) and in memory (``--db :memory:``, the same code without a file), and
   the panel's resident memory (VmRSS) at each mark; then the on-disk panel is SIGKILLed and restarted on its
   database: the time until it serves the counts again, and whether every count survived.
2. **Live stack**: the whole stack from the launcher, a run of ``--live-n`` MNIST test images with the panel's
   database on disk, then the same with ``:memory:``, alternated ``--repeats`` times so that load drifting on a shared
   machine hits both alike; images/s end to end, the median of each and the ratio of medians.

Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "services")]  # the packages and the panel's test stand-ins

import httpx  # noqa: E402
from panel_fakes import PanelUnderTest, start_panel  # noqa: E402

from control_panel.client import wait_run  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402

RUN = 10_000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def drive(c: httpx.Client, messages: int, marks: list[int], pid: int) -> dict[str, Any]:
    """Runs of up to 10,000 images until ``messages``; messages/s and RSS at each mark."""
    done, rss = 0, {}
    t0 = time.perf_counter()
    while done < messages:
        n = min(RUN, messages - done)
        run = wait_run(c, c.post("/api/runs", json={"n": n, "batch_size": 500, "window": 4000}).json()["id"],
                       timeout=600, poll_s=0.05)
        assert run["status"] == "done" and run["decided"] == n, run
        done += n
        for m in marks:
            if done >= m and str(m) not in rss:
                rss[str(m)] = round(rss_mb(pid), 1)
    seconds = time.perf_counter() - t0
    return {"messages": done, "seconds": round(seconds, 2), "messages_per_s": round(done / seconds, 1), "rss_mb": rss}


def capacity(folder: Path, db: str, messages: int, marks: list[int]) -> dict[str, Any]:
    in_memory = ["--db", ":memory:"] if db == ":memory:" else []  # after start_panel's own --db: this one wins
    p = start_panel(folder, "--retention-messages", str(2 * messages), *in_memory,
                    db=None if in_memory else Path(db))
    try:
        with p.http(timeout=120) as c:
            idle = round(rss_mb(p.proc.pid), 1)
            out = drive(c, messages, marks, p.proc.pid)
            summary = c.get("/api/summary").json()
        out |= {"db": db, "rss_idle_mb": idle, "receiver_reports": summary["listeners"]["receiver"]["reports"],
                "eve_reports": summary["listeners"]["eve"]["reports"]}
        if db != ":memory:":
            out["db_mb"] = round(sum(f.stat().st_size for f in Path(db).parent.glob(Path(db).name + "*")) / 2**20, 1)
            out["restart"] = restart(folder, p, summary)
        return out
    finally:
        p.close()


def restart(folder: Path, p: PanelUnderTest, before: dict[str, Any]) -> dict[str, Any]:
    """SIGKILL the panel and start it on the same database: seconds from the kill until ``/api/summary`` answers, and
    whether every count came back."""
    p.stop(kill=True)
    killed = time.perf_counter()
    p2 = start_panel(folder, db=p.db, emulator=p.emulator, transmitter=p.transmitter)
    try:
        with p2.http(timeout=120) as c:
            after = c.get("/api/summary").json()
        seconds = time.perf_counter() - killed
        same = after["messages"] == before["messages"] and all(
            after["listeners"][k]["reports"] == v["reports"] and after["listeners"][k]["correct"] == v["correct"]
            for k, v in before["listeners"].items())
        return {"seconds": round(seconds, 2), "messages": after["messages"], "counts_survived": same}
    finally:
        p2.close()


def live(checkpoints: Path, db: str, n: int) -> dict[str, Any]:
    os.environ["DIFFSEM_DB"] = db
    cfg = StackConfig.ephemeral(checkpoints=checkpoints, device="cpu",
                                eavesdroppers=[EveSpec("eve", "feature-classifier", 0.0)])
    with Stack(cfg) as stack, httpx.Client(base_url=stack.http_url, timeout=60) as c:
        wait_run(c, c.post("/api/runs", json={"n": 200, "batch_size": 100}).json()["id"])  # warm-up
        run = wait_run(c, c.post("/api/runs", json={"n": n, "batch_size": 100}).json()["id"])
    return {"db": db, "n": n, "status": run["status"], "images_per_s": round(run["images_per_s"], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=500_000)
    p.add_argument("--marks", default="100000,250000,500000")
    p.add_argument("--memory-messages", type=int, default=100_000, help="messages for the :memory: comparison")
    p.add_argument("--live-n", type=int, default=2000)
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    p.add_argument("--repeats", type=int, default=3, help="alternated on-disk / :memory: live runs")
    p.add_argument("--skip-live", action="store_true")
    args = p.parse_args()
    marks = [int(m) for m in args.marks.split(",")]
    result: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="diffsem-ledger-") as tmp:
        folder = Path(tmp)
        result["disk"] = capacity(folder, str(folder / "panel.db"), args.messages, marks)
        result["memory"] = capacity(folder, ":memory:", args.memory_messages, [args.memory_messages])
        if not args.skip_live:
            result["live"] = [live(args.checkpoints, db, args.live_n) for _ in range(args.repeats)
                              for db in (str(folder / f"live-{time.monotonic_ns()}.db"), ":memory:")]
    result["loadavg_end"] = os.getloadavg()
    d, m = result["disk"], result["memory"]
    print("| metric | value |\n|---|---|")
    print(f"| panel capacity, SQLite on disk (WAL) | {d['messages_per_s']} messages/s over {d['messages']} messages "
          f"(2 reports each) |")
    print(f"| panel capacity, SQLite :memory: | {m['messages_per_s']} messages/s over {m['messages']} messages |")
    r = d["restart"]
    print(f"| panel SIGKILL + restart at {r['messages']} messages | counts served again after {r['seconds']} s "
          f"(every count survived: {r['counts_survived']}) |")
    print(f"| panel RSS idle / at marks | {d['rss_idle_mb']} MB / {d['rss_mb']} MB (database {d.get('db_mb')} MB) |")
    if "live" in result:
        disk = [r["images_per_s"] for r in result["live"] if r["db"] != ":memory:"]
        mem = [r["images_per_s"] for r in result["live"] if r["db"] == ":memory:"]
        print(f"| live stack, {args.live_n} images, on disk / :memory: | {disk} / {mem} images/s; medians "
              f"{statistics.median(disk)} / {statistics.median(mem)} (ratio "
              f"{statistics.median(disk) / statistics.median(mem):.3f}) |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
