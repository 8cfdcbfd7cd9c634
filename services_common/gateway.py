"""``python -m services_common.gateway``: the tap network's only way out (docs/design.md §8, "Networks").

Eavesdroppers live alone on compose's internal ``tap`` network. This gateway, on both ``tap`` and ``control``,
forwards exactly the TCP ports it is given, byte for byte, and nothing else: in compose, the channel emulator's
gRPC port (its Listen service) and the panel's Telemetry port. Whatever an eavesdropper sends through them is still
checked by the service behind (its credential, services_common/auth.py); the gateway only decides what is reachable.

    python -m services_common.gateway --forward 50052=channel_emulator:50052 --forward 50060=control_panel:50060

It needs no health service of its own: ``python -m services_common.healthcheck 127.0.0.1:50052`` reaches the
emulator's health service through it, so the gateway is healthy exactly when its first route works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass

from services_common import logs

log = logging.getLogger("gateway")
CHUNK = 1 << 16  # bytes read per call


@dataclass(frozen=True)
class Route:
    """Listen on ``listen_port`` (all interfaces) and forward each connection to ``host:port``."""

    listen_port: int
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        """``LISTEN_PORT=HOST:PORT``; raises ValueError saying what is accepted."""
        try:
            listen, target = text.split("=", 1)
            host, port = target.rsplit(":", 1)
            route = cls(int(listen), host, int(port))
        except ValueError:
            raise ValueError(f"--forward {text!r}: expected LISTEN_PORT=HOST:PORT, e.g. 50052=channel_emulator:50052") \
                from None
        if not host or not all(0 < p < 65536 for p in (route.listen_port, route.port)):
            raise ValueError(f"--forward {text!r}: ports must be 1-65535 and the host non-empty")
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


async def run(routes: list[Route], host: str = "0.0.0.0") -> None:
    """Serve every route until SIGTERM or SIGINT."""
    servers = [await asyncio.start_server(lambda r, w, route=route: _serve_one(route, r, w), host, route.listen_port)
               for route in routes]
    for route in routes:
        log.info("forwarding %s:%d -> %s:%d", host, route.listen_port, route.host, route.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
        await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services_common.gateway", description=__doc__.splitlines()[0])
    p.add_argument("--forward", action="append", required=True, metavar="LISTEN_PORT=HOST:PORT",
                   help="a TCP port to forward (repeatable); nothing else is reachable through the gateway")
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
