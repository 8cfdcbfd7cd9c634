"""Runs and sweeps at the panel: completion, validation at the door, bounds, durability across restarts, retention.

A real panel process (``python -m control_panel``) with a real SQLite file, in front of stand-in upstreams
(``panel_fakes``) that report for every message they are given, so these tests need no model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from panel_fakes import FakeTransmitter, PanelUnderTest, start_panel
from svc_helpers import wait_until


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[PanelUnderTest]:
    p = start_panel(tmp_path, "--max-runs", "2", "--retention-messages", "250", "--prune-every-s", "0.2")
    yield p
    p.close()


def finished(c, run_id: str) -> dict | None:
    run = c.get(f"/api/runs/{run_id}").json()
    return run if run["status"] in ("done", "failed", "cancelled", "interrupted") else None


def test_a_run_is_done_only_when_every_listener_reported_or_was_counted_missed(tmp_path: Path) -> None:
    tx = FakeTransmitter(silent={"eve"})
    p = start_panel(tmp_path, transmitter=tx)
    try:
        with p.http() as c:
            run_id = c.post("/api/runs", json={"n": 50, "batch_size": 25, "report_deadline_s": 2}).json()["id"]
            # synchronise on the state "the receiver has reported everything, eve nothing": the run must not be done
            waiting = wait_until(lambda: (r := c.get(f"/api/runs/{run_id}").json())["decided"] == 50
                                 and r["pending"] == ["eve"] and r, 30, "the receiver's 50 decisions counted")
            assert waiting["status"] == "running", waiting
            run = wait_until(lambda: finished(c, run_id), 30, "the deadline of the silent eavesdropper")
        assert run["status"] == "done" and run["expected"] == ["eve", "receiver"]
        assert run["pending"] == [] and run["missed"] == {"eve": 50}
        assert run["listeners"]["receiver"]["reports"] == 50 and run["accuracy"]["receiver"] == 1.0
    finally:
        p.close()


def test_a_slow_listener_is_waited_for_not_cut_off(tmp_path: Path) -> None:
    tx = FakeTransmitter(delay_s=1.5)
    p = start_panel(tmp_path, transmitter=tx)
    try:
        with p.http() as c:
            run_id = c.post("/api/runs", json={"n": 40, "batch_size": 20, "report_deadline_s": 5}).json()["id"]
            run = wait_until(lambda: finished(c, run_id), 60, "the run")
        assert run["status"] == "done" and run["missed"] == {}
        assert run["listeners"]["eve"]["reports"] == run["listeners"]["receiver"]["reports"] == 40
    finally:
        p.close()


@pytest.mark.parametrize("body,words", [
    ({"dataset": "../../etc/passwd"}, "accepted: mnist, fashion-mnist"),
    ({"dataset": "mnist", "start": 9990, "n": 20}, "start + n = 10010 exceeds the 10000 images of mnist/test"),
    ({"dataset": "mnist", "n": 0}, "n: Input should be greater than or equal to 1"),
    ({"dataset": "mnist", "split": "valid"}, "split"),
    ({"dataset": "mnist", "count": 2}, "count: Extra inputs are not permitted"),
])
def test_bad_runs_are_refused_at_the_door(panel: PanelUnderTest, body: dict, words: str) -> None:
    with panel.http() as c:
        before = c.get("/api/summary").json()["messages"]
        r = c.post("/api/runs", json=body)
        assert r.status_code == 422, r.text
        assert words in r.json()["detail"], r.json()
        assert c.get("/api/runs").json() == [] and c.get("/api/summary").json()["messages"] == before


def test_a_missing_data_set_gives_the_fetch_message_not_a_filesystem_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder would be created")
    import os

    old = os.environ.get("DIFFSEM_DATA_DIR")
    os.environ["DIFFSEM_DATA_DIR"] = str(blocker / "data")
    try:
        p = start_panel(tmp_path)
    finally:
        os.environ.pop("DIFFSEM_DATA_DIR") if old is None else os.environ.__setitem__("DIFFSEM_DATA_DIR", old)
    try:
        with p.http() as c:
            r = c.post("/api/runs", json={"dataset": "fashion-mnist", "n": 10})
        assert r.status_code == 503, r.text
        assert "missing" in r.json()["detail"] and "Fetch with: diffsem data fetch fashion-mnist" in r.json()["detail"]
    finally:
        p.close()


def test_concurrent_runs_are_bounded_with_429(tmp_path: Path) -> None:
    tx = FakeTransmitter(silent={"receiver", "eve"})  # nothing is ever decided: the runs stay in flight
    p = start_panel(tmp_path, "--max-runs", "2", transmitter=tx)
    try:
        with p.http() as c:
            ids = [c.post("/api/runs", json={"n": 10}).json()["id"] for _ in range(2)]
            r = c.post("/api/runs", json={"n": 10})
            assert r.status_code == 429 and int(r.headers["retry-after"]) > 0, r.text
            assert "2 runs and sweeps are already in flight" in r.json()["detail"]
            assert c.delete(f"/api/runs/{ids[0]}").json()["status"] == "cancelling"
            wait_until(lambda: finished(c, ids[0]), 10, "the cancellation")
            assert c.post("/api/runs", json={"n": 10}).status_code == 202  # a slot is free again
    finally:
        p.close()


def test_a_restart_keeps_every_count_and_marks_the_run_in_flight_interrupted(tmp_path: Path) -> None:
    p = start_panel(tmp_path)
    with p.http() as c:
        done_id = c.post("/api/runs", json={"n": 100, "batch_size": 50}).json()["id"]
        wait_until(lambda: finished(c, done_id), 30, "the first run")
        p.transmitter.silent = {"receiver", "eve"}
        stuck_id = c.post("/api/runs", json={"n": 100}).json()["id"]
        wait_until(lambda: c.get(f"/api/runs/{stuck_id}").json()["status"] == "running", 10, "the second run")
        before = c.get("/api/summary").json()
    p.stop(kill=True)  # no goodbye: SIGKILL
    killed = time.monotonic()
    p2 = start_panel(tmp_path, db=p.db, emulator=p.emulator, transmitter=p.transmitter)
    try:
        with p2.http() as c:
            after = c.get("/api/summary").json()
            recovered_s = time.monotonic() - killed
            stuck = c.get(f"/api/runs/{stuck_id}").json()
            done = c.get(f"/api/runs/{done_id}").json()
            decisions = c.get(f"/api/runs/{done_id}/decisions").json()
        assert after["messages"] == before["messages"] == 200
        assert after["listeners"] == {k: {**v, "latency_ms_p50": None, "latency_ms_p99": None}
                                      for k, v in before["listeners"].items()}
        assert stuck["status"] == "interrupted" and "stopped" in stuck["error"]
        assert done["status"] == "done" and done["listeners"]["receiver"]["correct"] == 100
        assert decisions["truth"] == decisions["listeners"]["receiver"] and len(decisions["truth"]) == 100
        print(f"panel restart: counts back after {recovered_s:.2f} s")
    finally:
        p2.close()
        for s in p.servers:
            s.stop(0)


def test_runs_can_be_deleted_and_old_messages_follow_retention(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        first = c.post("/api/runs", json={"n": 200, "batch_size": 100}).json()["id"]
        wait_until(lambda: finished(c, first), 30, "the first run")
        second = c.post("/api/runs", json={"n": 200, "start": 200, "batch_size": 100}).json()["id"]
        wait_until(lambda: finished(c, second), 30, "the second run")
        # retention keeps the newest 250 messages: the first run's early messages go, every count stays
        wait_until(lambda: c.get(f"/api/messages/{first}-0").status_code == 404, 10, "the pruning")
        assert c.get(f"/api/messages/{second}-399").status_code == 200
        summary = c.get("/api/summary").json()
        assert summary["messages"] == 400 and summary["listeners"]["receiver"]["reports"] == 400
        assert c.get(f"/api/runs/{first}").json()["listeners"]["receiver"]["reports"] == 200
        truth = c.get(f"/api/runs/{first}/decisions").json()["truth"]
        assert truth[:150] == [None] * 150 and None not in truth[150:]
        assert c.delete(f"/api/runs/{first}").json()["status"] == "deleted"
        assert c.get(f"/api/runs/{first}").status_code == 404
        assert c.delete(f"/api/runs/{first}").status_code == 404
        assert [r["id"] for r in c.get("/api/runs").json()] == [second]
        assert c.get("/api/summary").json()["messages"] == 400


def test_a_live_privacy_sweep_records_accuracy_per_t_star_and_restores_t_star(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        r = c.post("/api/sweeps", json={"t_stars": [0, 1000], "n": 20})
        assert r.status_code == 422 and "t_star=1000" in r.json()["detail"], r.text
        assert panel.transmitter.applied == []  # the bad level was refused before anything changed
        sweep_id = c.post("/api/sweeps", json={"t_stars": [0, 500, 900], "n": 40, "batch_size": 20}).json()["id"]
        assert c.put("/api/links", json={"t_star": 100}).status_code == 409  # the sweep owns t*
        sweep = wait_until(lambda: (s := c.get(f"/api/sweeps/{sweep_id}").json())["status"] != "running" and s, 60,
                           "the sweep")
        channel = c.get("/api/links").json()
    assert sweep["status"] == "done", sweep
    assert [p["t_star"] for p in sweep["points"]] == [0, 500, 900]
    assert [p["accuracy"]["receiver"] for p in sweep["points"]] == [1.0, 1.0, 1.0]
    assert [p["accuracy"]["eve"] for p in sweep["points"]] == [1.0, 0.5, 0.1]  # the fake's eavesdropper
    assert sweep["restored_t_star"] == 300 and channel["t_star"] == 300


def test_the_offline_chart_shows_the_committed_headline_by_default(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        results = c.get("/api/offline-results").json()
    assert results["file"] == "results.json" and results["dataset"] == "mnist" and results["n"] == 10000
    assert results["default_t_star"] == 300 and any(r["t_star"] == 300 for r in results["rows"])
    with panel.http() as c:  # the deprecated name of the route answers the same, until the next release
        assert c.get("/api/sweep").json() == results
        assert c.get("/openapi.json").json()["paths"]["/api/sweep"]["get"]["deprecated"]
