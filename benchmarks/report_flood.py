"""The panel's memory under a flood of maximum-size reports from an eavesdropper's own credential (issue 19, item 6).

    .venv/bin/python benchmarks/report_flood.py [--rate 100] [--seconds 60] [--concurrency 32]

A real panel (``python -m control_panel``, database in memory, its telemetry verifying with an authority key) and one
attacker holding a valid eavesdropper credential. The attacker sends ``--rate`` ``Telemetry.Report`` calls per second
for ``--seconds``, each the largest the panel accepts: ``MAX_REPORTS`` reports with every field at its cap (a
128-character message id and method, a 512-character error, 16 judges of 64-character names, a 28x28 float32
reconstruction), for message ids the panel does not know (counted as unmatched, stored nowhere). Then the same rate of
oversized calls (2 MiB: refused with RESOURCE_EXHAUSTED as they are read). At most ``--concurrency`` calls are in
flight; the panel takes at most ``control_panel.telemetry.MAX_CONCURRENT_CALLS`` at once and refuses the rest
(RESOURCE_EXHAUSTED), which the attacker counts.

Reported: the panel's VmRSS when idle (after one warm-up call of each kind) and its peak and final RSS during each
flood (sampled every 0.2 s), the calls sent, accepted and refused, and the achieved rate. Prints a Markdown table and
one JSON line. The target is a peak at most 50 MB above idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from control_panel.telemetry import MAX_CONCURRENT_CALLS, MAX_REQUEST_BYTES  # noqa: E402
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc  # noqa: E402
from services_common import auth  # noqa: E402
from services_common.client import grpc_aio_channel  # noqa: E402
from services_common.sizes import (  # noqa: E402
    MAX_ERROR_CHARS,
    MAX_ID_CHARS,
    MAX_JUDGE_CHARS,
    MAX_JUDGES,
    MAX_METHOD_CHARS,
    MAX_REPORTS,
)

NAME = "flood"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def largest_request(call: int) -> telemetry_pb2.ReportRequest:
    """MAX_REPORTS reports, every field at its cap, for message ids nobody registered."""
    image = common_pb2.Tensor(data=np.random.default_rng(call).random((1, 28, 28), np.float32).tobytes(),
                              shape=[1, 28, 28], dtype=common_pb2.DTYPE_FLOAT32)
    judges = {f"{j:02d}".ljust(MAX_JUDGE_CHARS, "j"): 3 for j in range(MAX_JUDGES)}
    return telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(
        message_id=f"{call}-{i}".ljust(MAX_ID_CHARS, "m"), seq=i, listener=NAME, role=common_pb2.ROLE_EAVESDROPPER,
        method="x" * MAX_METHOD_CHARS, has_label=True, label=3, reconstruction=image, latency_ms=1.0, abar_eff=0.4,
        report_time=time.time(), error="e" * MAX_ERROR_CHARS, judge_labels=judges) for i in range(MAX_REPORTS)])


def start_panel(folder: Path) -> tuple[subprocess.Popen, str, bytes]:
    key = auth.init_dir(folder / "auth", [NAME])
    port_file = folder / "panel.port.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFSEM_")} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "control_panel", "--http-port", "0", "--telemetry-port", "0",
                             "--port-file", str(port_file), "--db", ":memory:", "--transmitter", "127.0.0.1:9",
                             "--emulator", "127.0.0.1:9", "--auth-key-file", str(folder / "auth" / "authority.key")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the panel did not start")
        time.sleep(0.1)
    return proc, f"127.0.0.1:{json.loads(port_file.read_text())['telemetry']}", key


async def flood(stub: telemetry_pb2_grpc.TelemetryStub, requests: list[telemetry_pb2.ReportRequest], rate: float,
                seconds: float, concurrency: int, pid: int) -> dict[str, Any]:
    counts = {"sent": 0, "accepted_calls": 0, "unmatched_reports": 0, "refused": {}, "skipped_in_flight": 0}
    rss: list[float] = []
    in_flight: set[asyncio.Task] = set()

    async def one(req: telemetry_pb2.ReportRequest) -> None:
        try:
            reply = await stub.Report(req, timeout=30)
            counts["accepted_calls"] += 1
            counts["unmatched_reports"] += reply.unmatched
        except grpc.aio.AioRpcError as exc:
            counts["refused"][exc.code().name] = counts["refused"].get(exc.code().name, 0) + 1
            counts.setdefault("why", {}).setdefault(exc.code().name, exc.details())

    async def sample(stop: asyncio.Event) -> None:
        while not stop.is_set():
            rss.append(rss_mb(pid))
            await asyncio.sleep(0.2)

    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(stop))
    t0 = time.perf_counter()
    i = 0
    while (now := time.perf_counter() - t0) < seconds:
        due = int(now * rate) + 1
        while i < due:
            if len(in_flight) >= concurrency:
                counts["skipped_in_flight"] += 1  # the attacker's own bound: the panel is behind
            else:
                task = asyncio.create_task(one(requests[i % len(requests)]))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                counts["sent"] += 1
            i += 1
        await asyncio.sleep(max(0.0, (i / rate) - (time.perf_counter() - t0)))
    await asyncio.gather(*in_flight, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    await sampler
    return counts | {"seconds": round(elapsed, 1), "achieved_calls_per_s": round(counts["sent"] / elapsed, 1),
                     "rss_peak_mb": round(max(rss), 1), "rss_end_mb": round(rss_mb(pid), 1)}


async def measure(address: str, key: bytes, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    credential = auth.issue(key, auth.EAVESDROPPER, NAME)
    largest = [largest_request(c) for c in range(8)]
    oversized = [telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(
        message_id="x", listener=NAME, role=common_pb2.ROLE_EAVESDROPPER, method="m" * (2 << 20))])]
    async with grpc_aio_channel(address, credential) as ch:
        stub = telemetry_pb2_grpc.TelemetryStub(ch)
        await stub.Report(largest[0], timeout=30)  # warm-up: every code path has run once
        try:
            await stub.Report(oversized[0], timeout=30)
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(2)
        idle = rss_mb(pid)
        out = {"idle_rss_mb": round(idle, 1), "request_bytes": largest[0].ByteSize(),
               "max_request_bytes": MAX_REQUEST_BYTES, "max_concurrent_calls": MAX_CONCURRENT_CALLS}
        out["largest"] = await flood(stub, largest, args.rate, args.seconds, args.concurrency, pid)
        out["oversized"] = await flood(stub, oversized, args.rate, args.seconds, args.concurrency, pid)
    for kind in ("largest", "oversized"):
        out[kind]["peak_above_idle_mb"] = round(out[kind]["rss_peak_mb"] - idle, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=100.0, help="Report calls per second")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--concurrency", type=int, default=32, help="the attacker's calls in flight at most")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, address, key = start_panel(Path(d))
        try:
            res = asyncio.run(measure(address, key, proc.pid, args))
        finally:
            proc.terminate()
            proc.wait(30)
    res |= {"rate": args.rate, "seconds": args.seconds, "cpus": os.cpu_count(), "host": platform.node()}
    print("| flood | calls sent | accepted | refused | achieved calls/s | idle RSS MB | peak RSS MB | peak - idle MB |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, what in (("largest", f"largest accepted ({res['request_bytes'] / 2**20:.2f} MiB)"),
                       ("oversized", "oversized (2 MiB method)")):
        r = res[kind]
        refused = ", ".join(f"{k} {v}" for k, v in r["refused"].items()) or "0"
        print(f"| {what} | {r['sent']} | {r['accepted_calls']} | {refused} | {r['achieved_calls_per_s']} | "
              f"{res['idle_rss_mb']} | {r['rss_peak_mb']} | {r['peak_above_idle_mb']} |")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
