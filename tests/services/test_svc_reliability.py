"""The stack under load and faults, on loopback: concurrent clients, an emulator restart, a slow listener.

It shares the session stack (one stack per configuration): the emulator it kills comes back with the launcher's
settings, and every listener re-attaches. The full-size load and the memory check are ``benchmarks/load.py``.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest
from svc_helpers import LiveStack, wait_until

CLIENTS, PER_CLIENT = 16, 12  # benchmarks/load.py runs 16 x 200


@pytest.fixture()
def stack(live: LiveStack) -> LiveStack:
    return live


def npy(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, img.astype(np.float32))
    return buf.getvalue()


def summary(live: LiveStack) -> dict[str, Any]:
    with live.http() as c:
        return c.get("/api/summary").json()


def wait_attached(live: LiveStack, names: tuple[str, ...], timeout: float = 60.0) -> float:
    def attached() -> bool:
        s = summary(live)
        links = s.get("links", {})  # the last known state while the emulator is unreachable: links_error says so
        return "links_error" not in s and all(links.get(n, {}).get("attached") for n in names)

    start = time.monotonic()
    wait_until(attached, timeout, f"{', '.join(names)} attached", poll_s=0.1)
    return time.monotonic() - start


def test_concurrent_clients_lose_nothing_and_counts_match(stack: LiveStack) -> None:
    from diffsem.data import load_split

    images, labels = load_split("mnist", "test")
    before = summary(stack)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=stack.url, timeout=60) as c:
            for j in range(PER_CLIENT):
                i = k * PER_CLIENT + j
                r = c.post("/api/transmit", files={"file": ("x.npy", npy(images[i, 0].numpy()))},
                           data={"label": str(int(labels[i]))})
                with lock:
                    statuses.append(r.status_code)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    after = summary(stack)
    ok = statuses.count(200)
    assert len(statuses) == CLIENTS * PER_CLIENT
    assert set(statuses) <= {200, 429, 503}, statuses  # a response or a clear refusal, never a timeout
    assert ok == CLIENTS * PER_CLIENT  # at 16 clients nothing is refused at the default sizes
    assert after["messages"] - before["messages"] == ok
    rx_b, rx_a = before["listeners"].get("receiver", {}), after["listeners"]["receiver"]
    assert rx_a["reports"] - rx_b.get("reports", 0) == ok
    assert after["duplicate_reports"] == before["duplicate_reports"]
    link = after["links"]["receiver"]
    assert link["dropped_queue"] == 0 and link["lost"] == 0  # the legitimate link drops nothing


def test_emulator_killed_mid_run_everyone_reconnects(stack: LiveStack) -> None:
    n = 600
    old = stack.pid("channel_emulator")
    before = summary(stack)
    with stack.http() as c:
        run_id = c.post("/api/runs", json={"n": n, "batch_size": 50, "retry_after_s": 5, "max_retries": 20}).json()["id"]
        wait_until(lambda: c.get(f"/api/runs/{run_id}").json()["decided"] >= 100, 120, "100 decisions")
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: stack.pid("channel_emulator") != old and stack.state["services"]["channel_emulator"]["ports"],
                   90, "the emulator's restart")
        wait_attached(stack, ("receiver", "eve"))
        recovered_after = time.monotonic() - killed  # restart + both listeners re-subscribed
        run = stack.wait_run(run_id, timeout=300)
        after = c.get("/api/summary").json()
    print(f"emulator restart: receiver and eve re-attached {recovered_after:.2f} s after the kill; run: "
          f"{run['decided']} decided, {run['gave_up']} given up, {run['retransmits']} retransmitted")
    assert run["status"] == "done", run
    # Either every image was decided, or the run says exactly how many it gave up on; nothing double counted.
    assert run["decided"] + run["gave_up"] == n
    assert run["listeners"]["receiver"]["reports"] == run["decided"]
    # A batch sent twice (the panel retries a Transmit that failed during the outage, though the frames may have
    # gone out) is reported twice: the ledger keeps the first report, counts the second as a duplicate, never
    # counts it again (checked above: reports == decided).
    print(f"duplicate reports ignored: {after['duplicate_reports'] - before['duplicate_reports']}")


def test_slow_listener_drops_only_on_its_own_link(stack: LiveStack) -> None:
    """A listener that sleeps per frame (the real ListenerLoop, bounded inbox) drops on its own link only."""
    from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
    from protos.diffsem.v1 import common_pb2
    from services_common.listener import ListenerLoop

    n = 600
    got = []

    def slow(frames: list) -> list:
        time.sleep(0.02 * len(frames))  # 50 frames/s: far slower than the run
        got.extend(frames)
        return []

    loop = ListenerLoop(stack.address("channel_emulator"), common_pb2.ROLE_EAVESDROPPER, "slow", slow, "sleep",
                        telemetry=None, max_batch=4, defaults=ch_pb.LinkSettings(queue_size=16),
                        credential=stack.credential("eavesdropper", "slow")).start()
    try:
        wait_attached(stack, ("slow",))
        with stack.http() as c:
            before = c.get("/api/summary").json()["links"]
            # "slow" never reports (no telemetry): the run stops waiting for it after 2 s of silence, not the default 10 s
            run = stack.wait_run(c.post("/api/runs", json={"n": n, "batch_size": 50, "report_deadline_s": 2}).json()["id"],
                                 timeout=300)
            links = c.get("/api/summary").json()["links"]
    finally:
        loop.stop()
    assert run["status"] == "done" and run["decided"] == n and run["retransmits"] == 0
    assert links["slow"]["dropped_queue"] > 0 and len(got) < n
    assert loop.inbox.maxsize == 16  # bounded: the backlog waits (and is dropped, counted) at the emulator
    for name in ("receiver", "eve"):
        assert links[name]["dropped_queue"] == before[name]["dropped_queue"], name


def test_every_grpc_service_exports_prometheus_metrics(stack: LiveStack) -> None:
    services = stack.state["services"]
    for name in ("channel_emulator", "transmitter", "receiver", "eve"):
        assert "metrics" in services[name]["ports"], name
    with stack.http() as c:
        run = stack.wait_run(c.post("/api/runs", json={"n": 50, "batch_size": 25}).json()["id"])
    assert run["status"] == "done"

    def scrape(name: str) -> str:  # "" until the listener has counted frames
        text = httpx.get(f"http://127.0.0.1:{services[name]['ports']['metrics']}/metrics", timeout=10).text
        return text if f'diffsem_listener_frames_in_total{{listener="{name}"}}' in text else ""

    text = wait_until(lambda: scrape("receiver"), 30, "the receiver's frame counter")
    assert 'diffsem_listener_frames_in_total{listener="receiver"}' in text
    assert "diffsem_listener_decode_seconds_bucket" in text and "diffsem_listener_batch_size_bucket" in text
    assert 'diffsem_listener_queue_depth{listener="receiver"}' in text
    eve = wait_until(lambda: scrape("eve"), 30, "eve's frame counter")
    assert 'diffsem_listener_frames_in_total{listener="eve"}' in eve
    with stack.http() as c:
        panel = c.get("/metrics").text
    assert "dropped" in panel  # per-link drops, from the emulator's counters
