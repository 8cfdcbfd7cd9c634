"""The panel's HTTP limits, tried from a client's position on a real panel process (docs/design.md,
"Bounded resources"): body read timeout, header size and time, connections, JSON size, uploads in flight."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from panel_fakes import FakeTransmitter, PanelUnderTest, start_panel
from svc_helpers import wait_until


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelUnderTest]:
    p = start_panel(tmp_path_factory.mktemp("http"), "--body-timeout-s", "1.5", "--header-timeout-s", "1.5",
                    "--max-header-bytes", "8192", "--max-json-bytes", "65536", "--max-uploads", "4",
                    "--max-connections", "64", transmitter=FakeTransmitter(delay_s=0.4))
    yield p
    p.close()


def npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((28, 28), np.float32))
    return buf.getvalue()


def raw(panel: PanelUnderTest, payload: bytes, wait_s: float = 5.0) -> bytes:
    host, port = panel.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(payload)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass
    return b"".join(chunks)


def upload(c: httpx.Client) -> tuple[int, float, dict[str, str]]:
    t0 = time.perf_counter()
    r = c.post("/api/transmit", files={"file": ("x.npy", npy())})
    return r.status_code, time.perf_counter() - t0, dict(r.headers)


def test_a_slow_body_is_cut_off_while_normal_uploads_keep_their_latency(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        _, alone, _ = upload(c)
    head = (b"POST /api/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n"
            b'{"n": 1')  # then nothing: a slow-body client
    answers: list[bytes] = []
    slow = [threading.Thread(target=lambda: answers.append(raw(panel, head, wait_s=10))) for _ in range(3)]
    t0 = time.monotonic()
    for t in slow:
        t.start()
    with panel.http() as c:
        beside = [upload(c) for _ in range(3)]
    for t in slow:
        t.join()
    cut_after = time.monotonic() - t0
    assert all(a.startswith(b"HTTP/1.1 408") and b"not received within 1.5 s" in a for a in answers), answers
    assert cut_after < 6.0
    assert all(code == 200 for code, _, _ in beside)
    assert max(dt for _, dt, _ in beside) < alone + 1.0, (alone, beside)


def test_a_slow_or_huge_request_head_is_refused(panel: PanelUnderTest) -> None:
    big = raw(panel, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 431") and b"over the limit of 8192 bytes" in big, big[:200]
    t0 = time.monotonic()
    slow = raw(panel, b"GET /healthz HTTP/1.1\r\nhost: x\r\n", wait_s=10)
    assert slow.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5, slow
    with panel.http() as c:
        assert c.get("/healthz", headers={"x-fine": "a" * 4000}).status_code == 200


def test_json_bodies_are_size_limited_but_uploads_are_not_held_to_it(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        r = c.post("/api/runs", content=b'{"n": 1, "pad": "' + b"x" * 100_000 + b'"}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over the limit of 65536 bytes" in r.json()["detail"], r.text

        def chunked():  # no Content-Length: the limit counts the bytes as they stream in
            yield b'{"n": 1, "pad": "'
            for _ in range(20):
                yield b"x" * 10_000
            yield b'"}'

        r = c.post("/api/runs", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over the limit of 65536 bytes" in r.json()["detail"], r.text
        r = c.post("/api/transmit", files={"file": ("x.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 200_000)})
        assert r.status_code == 400 and "PNG" in r.json()["detail"], r.text  # read and judged, not refused for size


def test_two_files_in_one_upload_are_refused(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        before = c.get("/api/summary").json()["messages"]
        r = c.post("/api/transmit", files=[("file", ("a.npy", npy())), ("file", ("b.npy", npy()))])
        assert r.status_code == 422 and "exactly one image" in r.json()["detail"], r.text
        assert c.get("/api/summary").json()["messages"] == before


def test_uploads_past_the_bound_get_429_at_once_not_a_queue(tmp_path: Path) -> None:
    """With every upload slot held (the fake transmitter's reports wait on a gate), further uploads are refused
    while the held ones are still in flight: the refusal waits for no slot. Then the held ones complete."""
    gate = threading.Event()
    p = start_panel(tmp_path, "--max-uploads", "2", transmitter=FakeTransmitter(gate=gate))
    held: list[tuple[int, float, dict[str, str]]] = []
    try:
        def hold() -> None:
            with p.http() as c:
                held.append(upload(c))

        holders = [threading.Thread(target=hold) for _ in range(2)]
        for t in holders:
            t.start()
        wait_until(lambda: p.transmitter.sent == 2, 30, "both held uploads to reach the transmitter")
        with p.http() as c:
            refused = [upload(c) for _ in range(3)]
        assert all(t.is_alive() for t in holders) and not held  # refused while both slots were still held
        assert [code for code, _, _ in refused] == [429] * 3, refused
        assert all(h["retry-after"] == "1" for _, _, h in refused)
        gate.set()
        for t in holders:
            t.join(60)
        assert [code for code, _, _ in held] == [200, 200], held
        with p.http() as c:
            metrics = c.get("/metrics").text
        assert 'diffsem_uploads_total{status="429"} 3.0' in metrics
        assert 'diffsem_uploads_total{status="200"} 2.0' in metrics
    finally:
        gate.set()
        p.close()


def test_connections_past_the_cap_get_503(tmp_path: Path) -> None:
    p = start_panel(tmp_path, "--max-connections", "4")
    host, port = p.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(4)]
    try:
        with p.http() as c:
            r = c.get("/healthz")
        assert r.status_code == 503
    finally:
        for s in idle:
            s.close()
        p.close()
    assert p.proc.returncode is not None
