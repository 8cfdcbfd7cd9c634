"""services_common/gateway.py: forwards exactly the routes it is given (TCP ports or Unix sockets), byte for byte,
with half-close."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.stack import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _echo_server() -> tuple[socket.socket, int]:
    """A TCP server that sends back everything it reads, then closes after the client half-closes."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


@pytest.fixture()
def gateway() -> Iterator[tuple[int, int]]:
    srv, target = _echo_server()
    listen, closed = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "services_common.gateway", "--host", "127.0.0.1",
                             "--forward", f"{listen}={'127.0.0.1'}:{target}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until("the gateway to listen", lambda: _connects(listen) or proc.poll() is not None, 30, every=0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield listen, closed
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0  # SIGTERM is a clean stop
        srv.close()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_forwards_both_directions_until_half_close(gateway: tuple[int, int]) -> None:
    listen, _ = gateway
    payload = bytes(range(256)) * 4096  # 1 MiB, many reads
    with socket.create_connection(("127.0.0.1", listen), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the upstream sees end of stream and answers in full
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got == payload


def test_only_the_given_ports_are_served(gateway: tuple[int, int]) -> None:
    _, not_forwarded = gateway
    assert not _connects(not_forwarded)


def _round_trip(connect: socket.socket, payload: bytes) -> bytes:
    with connect as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def _unix(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def test_a_socket_route_forwards_replaces_a_stale_socket_and_lets_any_uid_connect(tmp_path: Path) -> None:
    """Compose's eavesdroppers reach the gateway only through its sockets (docs/design.md §8, "Networks")."""
    srv, target = _echo_server()
    sock = tmp_path / "emulator.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))  # what a killed gateway leaves behind
    stale.close()
    proc = subprocess.Popen([sys.executable, "-m", "services_common.gateway", "--forward", f"{sock}=127.0.0.1:{target}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until("the gateway's socket", lambda: _accepts(sock) or proc.poll() is not None, 30, every=0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o666  # connect(2) needs write: listeners run as other uids
        payload = os.urandom(1 << 20)
        assert _round_trip(_unix(sock), payload) == payload
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        srv.close()
    assert not sock.exists()  # a clean stop removes its sockets


def _accepts(path: Path) -> bool:
    try:
        _unix(path).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("route", "says"), [
    ("50052=nohostport", "expected LISTEN=HOST:PORT"),
    ("emulator.sock=channel_emulator:50052", "expected LISTEN=HOST:PORT"),  # a relative path
    ("/no/such/folder/emulator.sock=channel_emulator:50052", "does not exist"),
    ("0=channel_emulator:50052", "ports must be 1-65535"),
])
def test_a_bad_route_is_refused_with_what_is_accepted(route: str, says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "services_common.gateway", "--forward", route],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr
