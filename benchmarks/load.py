"""The live stack under load and faults, on loopback.

    .venv/bin/python benchmarks/load.py [--checkpoints checkpoints/mnist] [--clients 16] [--per-client 200]
        [--eavesdroppers 1] [--rss-frames 1000,10000] [--skip-restart] [--skip-rss] [--max-uploads N]

One script run starts the stack with the local launcher (every port ephemeral, one feature-classifier
eavesdropper at the legitimate SNR per --eavesdroppers) and measures:

1. **Sustained load**: ``clients`` concurrent HTTP clients each send ``per_client`` MNIST test images to
   ``POST /api/transmit`` (NumPy upload, label included). Reported: images/s (first request to last
   response), latency p50/p95/p99 (all answers, and per status: past the panel's upload limit a client gets 429
   at once), status counts (errors = anything but 200), the panel's message count against the requests sent,
   and the legitimate link's queue drops and losses.
2. **Recovery**: a run of 1000 images; after 200 decisions the channel emulator is SIGKILLed; the launcher
   restarts it on its port. Reported: seconds from the kill until the receiver and every eavesdropper are
   attached again (they reconnect with backoff), seconds until decisions flow again, and the run's
   decided / given up / retransmitted counts.
3. **Memory**: test-set runs until each service has handled ``rss_frames`` frames; the RSS (VmRSS) of every
   service after the first and the last count, and their ratio (target: within 20%).

Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service packages, when run as a script

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from control_panel.client import wait_run  # noqa: E402
from diffsem.data import load_split  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402


def npy(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, img.astype(np.float32))
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_test(url: str, images: np.ndarray, labels: np.ndarray, clients: int, per_client: int) -> dict[str, Any]:
    lat: list[float] = []
    by_status: dict[int | str, list[float]] = {}
    statuses: dict[int | str, int] = {}
    lock = threading.Lock()
    payloads = [npy(images[i % len(images)]) for i in range(clients * per_client)]

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for j in range(per_client):
                i = k * per_client + j
                t0 = time.perf_counter()
                try:
                    code: int | str = c.post("/api/transmit", files={"file": ("x.npy", payloads[i])},
                                             data={"label": str(int(labels[i % len(labels)]))}).status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    by_status.setdefault(code, []).append(dt * 1000)
                    statuses[code] = statuses.get(code, 0) + 1

    with httpx.Client(base_url=url) as c:
        before = c.get("/api/summary").json()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    with httpx.Client(base_url=url) as c:
        after = c.get("/api/summary").json()
    ms = np.asarray(lat) * 1000
    legit_b = before["links"].get("receiver", {})
    legit_a = after["links"]["receiver"]
    return {"clients": clients, "per_client": per_client, "requests": len(lat), "seconds": round(wall, 2),
            "images_per_s": round(statuses.get(200, 0) / wall, 1),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "statuses": {str(k): v for k, v in statuses.items()},
            "p99_ms_by_status": {str(k): round(float(np.percentile(v, 99)), 1) for k, v in by_status.items()},
            "errors": sum(v for k, v in statuses.items() if k != 200),
            "panel_messages": after["messages"] - before["messages"],
            "receiver_reports": after["listeners"]["receiver"]["reports"]
            - before["listeners"].get("receiver", {}).get("reports", 0),
            "duplicate_reports": after["duplicate_reports"] - before["duplicate_reports"],
            "legit_dropped_queue": legit_a["dropped_queue"] - legit_b.get("dropped_queue", 0),
            "legit_lost": legit_a["lost"] - legit_b.get("lost", 0)}


def recovery_test(stack: Stack, url: str, eves: list[str]) -> dict[str, Any]:
    n = 1000
    with httpx.Client(base_url=url, timeout=60) as c:
        run_id = c.post("/api/runs", json={"n": n, "batch_size": 50, "retry_after_s": 3, "max_retries": 5}).json()["id"]
        while c.get(f"/api/runs/{run_id}").json()["decided"] < 200:
            time.sleep(0.02)
        svc = stack.services["channel_emulator"]
        old = svc.proc.pid
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        attached_s = flowing_s = None
        decided0 = c.get(f"/api/runs/{run_id}").json()["decided"]
        while attached_s is None or flowing_s is None:
            if time.monotonic() - killed > 120:
                break
            s = c.get("/api/summary").json()
            links = s.get("links", {})
            if attached_s is None and svc.proc.pid != old and "links_error" not in s and all(links.get(x, {}).get("attached")
                                                                  for x in ["receiver", *eves]):
                attached_s = time.monotonic() - killed
            if flowing_s is None and c.get(f"/api/runs/{run_id}").json()["decided"] > decided0 + 50:
                flowing_s = time.monotonic() - killed
            time.sleep(0.05)
        run = wait_run(c, run_id)
        summ = c.get("/api/summary").json()
    return {"reattached_s": round(attached_s, 2) if attached_s else None,
            "decisions_flow_again_s": round(flowing_s, 2) if flowing_s else None, "run_status": run["status"],
            "n": n, "decided": run["decided"], "gave_up": run["gave_up"], "retransmits": run["retransmits"],
            "receiver_reports": run["listeners"]["receiver"]["reports"], "duplicate_reports": summ["duplicate_reports"]}


def rss_test(stack: Stack, url: str, marks: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    done = 0
    with httpx.Client(base_url=url, timeout=60) as c:
        for mark in marks:
            while done < mark:
                n = min(5000, mark - done)
                run = wait_run(c, c.post("/api/runs", json={"n": n, "batch_size": 200,
                                                            "start": done % 5000}).json()["id"])
                done += run["decided"]
            time.sleep(1.0)
            out[str(mark)] = {name: round(rss_mb(s.proc.pid), 1) for name, s in stack.services.items() if s.alive}
    first, last = out[str(marks[0])], out[str(marks[-1])]
    out["ratio"] = {k: round(last[k] / first[k], 3) for k in first if k in last}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--per-client", type=int, default=200)
    p.add_argument("--eavesdroppers", type=int, default=1)
    p.add_argument("--rss-frames", default="1000,10000")
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--receiver-threads", type=int, default=None)
    p.add_argument("--max-uploads", type=int, default=None, help="the panel's bound on uploads in flight (default 16)")
    args = p.parse_args()
    eves = [f"eve{i}" for i in range(args.eavesdroppers)]
    cfg = StackConfig.ephemeral(checkpoints=args.checkpoints, device="cpu",
                                eavesdroppers=[EveSpec(e, "feature-classifier", 0.0) for e in eves],
                                receiver_threads=args.receiver_threads,
                                panel_args=() if args.max_uploads is None else ("--max-uploads", str(args.max_uploads)))
    images, labels = load_split("mnist", "test")
    imgs = images[:, 0].numpy()
    labs = labels.numpy()
    result: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                              "loadavg_start": os.getloadavg()}
    with Stack(cfg) as stack:
        url = stack.http_url
        result["load"] = load_test(url, imgs, labs, args.clients, args.per_client)
        if not args.skip_restart:
            result["recovery"] = recovery_test(stack, url, eves)
        if not args.skip_rss:
            result["rss_mb"] = rss_test(stack, url, [int(x) for x in args.rss_frames.split(",")])
    result["loadavg_end"] = os.getloadavg()
    ld = result["load"]
    print("| metric | value |\n|---|---|")
    print(f"| sustained load ({ld['clients']} clients x {ld['per_client']}) | {ld['images_per_s']} images/s, "
          f"p50 {ld['p50_ms']} ms, p95 {ld['p95_ms']} ms, p99 {ld['p99_ms']} ms |")
    print(f"| errors / statuses | {ld['errors']} / {ld['statuses']} (429 = refused at the upload limit) |")
    print(f"| p99 by status | {ld['p99_ms_by_status']} ms |")
    print(f"| panel messages vs requests | {ld['panel_messages']} / {ld['requests']} "
          f"(receiver reports {ld['receiver_reports']}, duplicates {ld['duplicate_reports']}) |")
    print(f"| legitimate link drops / losses | {ld['legit_dropped_queue']} / {ld['legit_lost']} |")
    if "recovery" in result:
        r = result["recovery"]
        print(f"| emulator restart: re-attached / decisions again | {r['reattached_s']} s / "
              f"{r['decisions_flow_again_s']} s |")
        print(f"| run across the restart | {r['run_status']}: {r['decided']}/{r['n']} decided, {r['gave_up']} given up, "
              f"{r['retransmits']} retransmitted |")
    if "rss_mb" in result:
        for k, v in result["rss_mb"]["ratio"].items():
            marks = args.rss_frames.split(",")
            print(f"| RSS {k} ({marks[0]} -> {marks[-1]} frames) | {result['rss_mb'][marks[0]][k]} -> "
                  f"{result['rss_mb'][marks[-1]][k]} MB (x{v}) |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
