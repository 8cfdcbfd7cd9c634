"""What compose's containers use while eavesdroppers serve a run: the figures behind the eavesdroppers' limits.

    .venv/bin/python benchmarks/compose_eavesdroppers.py [--n 2000] [--profiles feature,inversion] [--every 1.0]

Brings the compose stack up with the eavesdroppers of ``--profiles`` on the compose test's engine
(tests/compose/engine.py: Docker Engine if it answers, else Podman; the image is built as the test builds it), runs
N MNIST test images through it, and meanwhile reads the engine's own stats (``GET /containers/{id}/stats``, the
Docker API that ``docker stats`` reads; Podman serves it too) for every container every ``--every`` seconds. Then
it takes the stack down. Prints a Markdown table per container and one JSON line:

- memory: the largest ``usage - inactive_file`` sampled (what ``docker stats`` shows), and the cgroup's own peak
  since the container started (``memory.max_usage_in_bytes`` or ``memory.peak``: page cache included, as the memory
  limit counts it), read inside the container after the run;
- CPU: the largest share of one core between two samples, and the mean over the run;
- processes: the largest ``pids`` count (threads included: that is what ``pids_limit`` counts).

CPU figures are only as good as the machine is quiet: on a loaded machine a container gets less than it asks for.

It takes the engine's lock, as the compose test does, so run it when no compose test runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.compose.engine import Engine, container_engine  # noqa: E402  (the test harness, not a package)
from tests.compose.stack import Stack, ensure_base_image, ensure_wheels, free_port, image_env, wait_until  # noqa: E402

EAVESDROPPERS = {"feature": "eve-feature", "inversion": "eve-inversion", "whitebox": "eve-whitebox"}
CGROUP_PEAK = "cat /sys/fs/cgroup/memory/memory.max_usage_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.peak"
# CPU seconds the container's cgroup has used (v1: nanoseconds; v2: cpu.stat's usage_usec), to check the stats' CPU
CGROUP_CPU_S = ("f=/sys/fs/cgroup/cpuacct/cpuacct.usage; [ -r $f ] || f=/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage; "
                "if [ -r $f ]; then awk '{print $1 / 1e9}' $f; "
                "else awk '$1 == \"usage_usec\" {print $2 / 1e6}' /sys/fs/cgroup/cpu.stat; fi")


def api(engine: Engine) -> httpx.Client:
    """The engine's Docker-compatible API on its Unix socket."""
    sock = engine.env.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    return httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://engine", timeout=30)


def sample(client: httpx.Client, cid: str) -> dict[str, float]:
    s = client.get(f"/containers/{cid}/stats", params={"stream": "false"}).json()
    mem = s.get("memory_stats") or {}
    st = mem.get("stats") or {}
    inactive = st.get("total_inactive_file", st.get("inactive_file", 0))
    return {"t": time.monotonic(), "cpu_ns": float(s["cpu_stats"]["cpu_usage"]["total_usage"]),
            "mem": float(mem.get("usage", 0)) - float(inactive),
            "pids": float((s.get("pids_stats") or {}).get("current", 0))}


def watch(engine: Engine, ids: dict[str, str], every: float, stop: threading.Event,
          out: dict[str, list[dict[str, float]]]) -> None:
    with api(engine) as client:
        while not stop.is_set():
            for name, cid in ids.items():
                try:
                    out[name].append(sample(client, cid))
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
            stop.wait(every)


def summary(samples: list[dict[str, float]]) -> dict[str, float]:
    shares = [(b["cpu_ns"] - a["cpu_ns"]) / 1e9 / (b["t"] - a["t"]) for a, b in pairwise(samples) if b["t"] > a["t"]]
    span = samples[-1]["t"] - samples[0]["t"]
    return {"samples": len(samples), "mem_peak_mib": max(x["mem"] for x in samples) / 2**20,
            "cpu_peak_cores": max(shares, default=0.0),
            "cpu_mean_cores": (samples[-1]["cpu_ns"] - samples[0]["cpu_ns"]) / 1e9 / span if span else 0.0,
            "pids_peak": max(x["pids"] for x in samples)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="MNIST test images in the run")
    p.add_argument("--profiles", default="feature,inversion", help=f"eavesdropper profiles ({', '.join(EAVESDROPPERS)})")
    p.add_argument("--every", type=float, default=1.0, help="seconds between two reads of the stats")
    args = p.parse_args()
    from diffsem.data import default_data_dir

    with container_engine() as engine:
        env = image_env() | {"DIFFSEM_HTTP_PORT": str(free_port()), "DIFFSEM_TRANSMITTER_PORT": str(free_port()),
                             "DIFFSEM_EMULATOR_PORT": str(free_port()), "DIFFSEM_RECEIVER_PORT": str(free_port()),
                             "DIFFSEM_DATA_DIR": str(default_data_dir()), "COMPOSE_PROFILES": args.profiles}
        st = Stack(engine, "diffsembench", env)
        ensure_base_image(engine)
        ensure_wheels()
        st.compose("build", timeout=1800)
        try:
            st.compose("up", "-d", timeout=900)
            services = ["channel_emulator", "transmitter", "control_panel", "receiver", "tap_gateway",
                        *(EAVESDROPPERS[p] for p in args.profiles.split(","))]
            wait_until("every service healthy", lambda: all(st.health(s) == "healthy" for s in services), 900, 2)
            wait_until("the data service", lambda: st.inspect("data")["State"]["Status"] == "exited", 300)
            ids = {s: st.inspect(s)["Id"] for s in services}
            cpu0 = {s: float(st.exec(s, "sh", "-c", CGROUP_CPU_S).stdout.split()[0]) for s in services}
            samples: dict[str, list[dict[str, float]]] = defaultdict(list)
            stop = threading.Event()
            watcher = threading.Thread(target=watch, args=(engine, ids, args.every, stop, samples), daemon=True)
            t0 = time.monotonic()
            watcher.start()
            run = st.run_images(args.n, timeout=3600)
            stop.set()
            watcher.join()
            wall = time.monotonic() - t0
            cpu = {s: float(st.exec(s, "sh", "-c", CGROUP_CPU_S).stdout.split()[0]) - cpu0[s] for s in services}
            peaks = {s: int(st.exec(s, "sh", "-c", CGROUP_PEAK).stdout.split()[0]) / 2**20 for s in services}
        finally:
            st.compose("down", "-v", "--remove-orphans", check=False)
    rows = {name: summary(s) | {"cgroup_peak_mib": peaks[name], "cgroup_cpu_s": cpu[name]}
            for name, s in samples.items() if len(s) > 1}
    accuracy = {name: t.get("accuracy") for name, t in run["listeners"].items()}
    lost = {name: t.get("lost") for name, t in run["listeners"].items()}
    print(f"engine {engine.kind}, {platform.node()}, {os.cpu_count()} CPUs; {args.n} images in {wall:.0f} s "
          f"({run['status']}); accuracy {accuracy}; lost {lost}\n")
    print("| container | memory peak, sampled (MiB) | cgroup peak (MiB) | CPU peak (cores) | CPU mean (cores) | "
          "CPU in the run, cgroup (s) | pids peak |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['mem_peak_mib']:.0f} | {r['cgroup_peak_mib']:.0f} | {r['cpu_peak_cores']:.2f} | "
              f"{r['cpu_mean_cores']:.2f} | {r['cgroup_cpu_s']:.1f} | {r['pids_peak']:.0f} |")
    print(json.dumps({"engine": engine.kind, "profiles": args.profiles, "n": args.n, "wall_s": round(wall, 1),
                      "accuracy": accuracy, "lost": lost, "containers": rows}))


if __name__ == "__main__":
    main()
