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

Bounded (docs/design.md §8): at most ``--max-connections`` connections at once over all routes (one more is closed
at once, counted and logged), and a connection that moves no byte either way for ``--idle-timeout-s`` is closed.
gRPC clients ping every 20 s (``services_common.server.grpc_options``), so an open ``Listen`` stream is never idle
that long; a connection an eavesdropper opens and leaves is.
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
MAX_CONNECTIONS = 256
IDLE_TIMEOUT_S = 120.0
LOG_EVERY_S = 10.0  # refused connections are logged at most this often
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


class Gateway:
    """The routes' connections: at most ``max_connections`` open, each closed after ``idle_timeout_s`` without a
    byte either way. ``refused`` and ``timed_out`` count what the bounds closed."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS, idle_timeout_s: float = IDLE_TIMEOUT_S):
        if max_connections < 1 or not idle_timeout_s > 0:
            raise ValueError(f"--max-connections {max_connections} must be >= 1 and --idle-timeout-s "
                             f"{idle_timeout_s} > 0")
        self.max_connections, self.idle_timeout_s = max_connections, idle_timeout_s
        self.open = self.refused = self.timed_out = 0
        self._logged = -LOG_EVERY_S

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, activity: list[float]) -> None:
        """Copy bytes until end of stream, then half-close, so each direction ends on its own (gRPC streams)."""
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(CHUNK):
                activity[0] = loop.time()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()

    async def _watch(self, activity: list[float], writers: tuple[asyncio.StreamWriter, ...]) -> None:
        """Close ``writers`` once no byte has moved for ``idle_timeout_s``."""
        loop = asyncio.get_running_loop()
        while (left := activity[0] + self.idle_timeout_s - loop.time()) > 0:
            await asyncio.sleep(left)
        self.timed_out += 1
        for w in writers:
            w.close()

    async def serve_one(self, route: Route, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        peer = client_w.get_extra_info("peername")
        if self.open >= self.max_connections:
            self.refused += 1
            now = asyncio.get_running_loop().time()
            if now - self._logged >= LOG_EVERY_S:
                self._logged = now
                log.warning("%d connections open, the limit: closing %s (%d refused so far)", self.open, peer,
                            self.refused)
            client_w.close()
            return
        self.open += 1
        try:
            await self._forward(route, client_r, client_w, peer)
        finally:
            self.open -= 1

    async def _forward(self, route: Route, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                       peer: object) -> None:
        try:
            upstream_r, upstream_w = await asyncio.wait_for(asyncio.open_connection(route.host, route.port),
                                                            self.idle_timeout_s)
        except (OSError, TimeoutError) as exc:
            log.warning("%s -> %s:%d refused: %s", peer, route.host, route.port, exc)
            client_w.close()
            return
        activity = [asyncio.get_running_loop().time()]
        watch = asyncio.create_task(self._watch(activity, (client_w, upstream_w)))
        try:
            await asyncio.gather(self._pipe(client_r, upstream_w, activity), self._pipe(upstream_r, client_w, activity))
        finally:
            watch.cancel()
            for w in (client_w, upstream_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    async def _listen(self, route: Route, host: str) -> asyncio.Server:
        def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> Awaitable[None]:
            return self.serve_one(route, r, w)

        bounds = f"at most {self.max_connections} connections, idle ones closed after {self.idle_timeout_s:g} s"
        if isinstance(route.listen, int):
            server = await asyncio.start_server(serve, host, route.listen)
            log.info("forwarding %s:%d -> %s:%d (%s)", host, route.listen, route.host, route.port, bounds)
            return server
        server = await asyncio.start_unix_server(serve, str(route.listen))  # replaces a stale socket of a restart
        os.chmod(route.listen, SOCKET_MODE)
        log.info("forwarding %s -> %s:%d (%s)", route.listen, route.host, route.port, bounds)
        return server

    async def start(self, routes: list[Route], host: str = "0.0.0.0") -> list[asyncio.Server]:
        """Listen on every route (a TCP port on ``host``, or a Unix socket); the servers (close them to stop)."""
        return [await self._listen(route, host) for route in routes]


async def run(routes: list[Route], host: str = "0.0.0.0", gateway: Gateway | None = None) -> None:
    """Serve every route until SIGTERM or SIGINT."""
    servers = await (gateway or Gateway()).start(routes, host)
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
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help="connections open at once over all routes; one more is closed at once (default %(default)s)")
    p.add_argument("--idle-timeout-s", type=float, default=IDLE_TIMEOUT_S,
                   help="close a connection that moves no byte either way for this long (default %(default)s)")
    args = p.parse_args(argv)
    logs.setup("gateway")
    try:
        routes = [Route.parse(text) for text in args.forward]
        gateway = Gateway(args.max_connections, args.idle_timeout_s)
    except ValueError as exc:
        log.error("gateway: cannot start: %s", exc)
        return 2
    asyncio.run(run(routes, args.host, gateway))
    return 0


if __name__ == "__main__":
    sys.exit(main())
