"""``python -m services_common.gateway``: the eavesdroppers' only way out (docs/design.md §8, "Networks").

In compose, eavesdroppers have no network interface at all (``network_mode: none``). This gateway, on the
``control`` network, serves exactly the routes it is given, byte for byte, and nothing else: there, two Unix
sockets in the ``tap`` volume, which the eavesdroppers mount read-only, forwarding to the channel emulator's gRPC
port (its Listen service) and the panel's Telemetry port. A route may also listen on a TCP port (all interfaces).
Whatever an eavesdropper sends through a route is still checked by the service behind (its credential,
services_common/auth.py); the gateway only decides what is reachable.

    python -m services_common.gateway --forward /tap/emulator.sock=channel_emulator:50052 \
                                      --forward /tap/telemetry.sock=control_panel:50060
    python -m services_common.gateway --forward 50052=channel_emulator:50052        # a TCP route

It needs no health service of its own: ``python -m services_common.healthcheck unix:///tap/emulator.sock`` reaches
the emulator's health service through it, so the gateway is healthy exactly when its first route works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from services_common import logs

log = logging.getLogger("gateway")
CHUNK = 1 << 16  # bytes read per call
# Any uid may connect to a socket route: connect(2) needs write permission on the socket file, the listeners run
# under their image's user, and who may reach a route is decided by who is given the folder (then the credential).
SOCKET_MODE = 0o666


@dataclass(frozen=True)
class Route:
    """Listen on ``listen`` (a TCP port on all interfaces, or the path of a Unix socket) and forward each
    connection to ``host:port``."""

    listen: int | Path
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        """``LISTEN=HOST:PORT``, LISTEN a port or an absolute socket path; raises ValueError saying what is accepted."""
        try:
            listen, target = text.split("=", 1)
            host, port = target.rsplit(":", 1)
            route = cls(Path(listen) if listen.startswith("/") else int(listen), host, int(port))
        except ValueError:
            raise ValueError(f"--forward {text!r}: expected LISTEN=HOST:PORT with LISTEN a port or an absolute socket "
                             "path, e.g. 50052=channel_emulator:50052 or /tap/emulator.sock=channel_emulator:50052") \
                from None
        ports = (route.port,) if isinstance(route.listen, Path) else (route.listen, route.port)
        if not host or not all(0 < p < 65536 for p in ports):
            raise ValueError(f"--forward {text!r}: ports must be 1-65535 and the host non-empty")
        if isinstance(route.listen, Path) and not route.listen.parent.is_dir():
            raise ValueError(f"--forward {text!r}: the socket's folder {route.listen.parent} does not exist")
        return route


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until end of stream, then half-close, so each direction ends on its own (gRPC streams)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _serve_one(route: Route, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    peer = client_w.get_extra_info("peername")
    try:
        upstream_r, upstream_w = await asyncio.open_connection(route.host, route.port)
    except OSError as exc:
        log.warning("%s -> %s:%d refused: %s", peer, route.host, route.port, exc)
        client_w.close()
        return
    try:
        await asyncio.gather(_pipe(client_r, upstream_w), _pipe(upstream_r, client_w))
    finally:
        for w in (client_w, upstream_w):
            w.close()
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()


async def _listen(route: Route, host: str) -> asyncio.Server:
    def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> Awaitable[None]:
        return _serve_one(route, r, w)

    if isinstance(route.listen, int):
        server = await asyncio.start_server(serve, host, route.listen)
        log.info("forwarding %s:%d -> %s:%d", host, route.listen, route.host, route.port)
        return server
    server = await asyncio.start_unix_server(serve, str(route.listen))  # replaces a stale socket of a restart
    os.chmod(route.listen, SOCKET_MODE)
    log.info("forwarding %s -> %s:%d", route.listen, route.host, route.port)
    return server


async def run(routes: list[Route], host: str = "0.0.0.0") -> None:
    """Serve every route until SIGTERM or SIGINT."""
    servers = [await _listen(route, host) for route in routes]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()
    for route in routes:
        if isinstance(route.listen, Path):
            route.listen.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services_common.gateway", description=__doc__.splitlines()[0])
    p.add_argument("--forward", action="append", required=True, metavar="LISTEN=HOST:PORT",
                   help="a TCP port or an absolute Unix socket path to forward to HOST:PORT (repeatable); nothing "
                        "else is reachable through the gateway")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    args = p.parse_args(argv)
    logs.setup("gateway")
    try:
        routes = [Route.parse(text) for text in args.forward]
    except ValueError as exc:
        log.error("gateway: cannot start: %s", exc)
        return 2
    asyncio.run(run(routes, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
