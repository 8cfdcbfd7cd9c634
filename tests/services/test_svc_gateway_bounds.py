"""The tap gateway's bounds (services_common/gateway.py), from an eavesdropper's side of it: one connection past the
cap is closed at once, and a connection left idle is closed after the idle timeout, while a busy one stays open."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from services_common.gateway import Gateway, Route

IDLE_S = 0.5


@pytest.fixture()
def gateway() -> Iterator[tuple[int, Gateway]]:
    """A gateway with a cap of 2 connections and a 0.5 s idle timeout, in front of an echo server."""
    echo = socket.create_server(("127.0.0.1", 0))

    def serve_echo() -> None:
        while True:
            try:
                conn, _ = echo.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: [c.sendall(d) for d in iter(lambda: c.recv(4096), b"")],
                             daemon=True).start()

    threading.Thread(target=serve_echo, daemon=True).start()
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()
    gw = Gateway(max_connections=2, idle_timeout_s=IDLE_S)
    probe = socket.create_server(("127.0.0.1", 0))  # a free port for the gateway to listen on
    port = probe.getsockname()[1]
    probe.close()
    servers = asyncio.run_coroutine_threadsafe(
        gw.start([Route(port, "127.0.0.1", echo.getsockname()[1])], "127.0.0.1"), loop).result(10)
    yield port, gw

    async def shutdown() -> None:  # every connection's task ends before the loop does
        for srv in servers:
            srv.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    loop.close()
    echo.close()


def closed_by_peer(s: socket.socket, timeout: float) -> bool:
    """Whether the gateway closes ``s`` within ``timeout`` (a read that returns end of stream or a reset)."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_connection_past_the_cap_is_closed_at_once(gateway: tuple[int, Gateway]) -> None:
    port, gw = gateway
    first, second = (socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2))
    for s in (first, second):  # both forwarded: they echo
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"
    third = socket.create_connection(("127.0.0.1", port), timeout=5)
    assert closed_by_peer(third, 5) and gw.refused == 1
    first.close()
    second.close()


def test_an_idle_connection_is_closed_and_a_busy_one_is_not(gateway: tuple[int, Gateway]) -> None:
    port, gw = gateway
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)
    busy = socket.create_connection(("127.0.0.1", port), timeout=5)
    for _ in range(8):  # 8 x 0.15 s = 1.2 s, more than twice the idle timeout, one byte each way each time
        busy.sendall(b"x")
        busy.settimeout(5)
        assert busy.recv(1) == b"x"
        assert not closed_by_peer(busy, 0.15)
    assert closed_by_peer(idle, 0.1) and gw.timed_out == 1  # long since idle
    busy.close()
    idle.close()
