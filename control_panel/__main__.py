"""``python -m control_panel``: the HTTP API + dashboard and the Telemetry gRPC server, in one process."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys
from pathlib import Path

import uvicorn

from control_panel.app import PanelSettings, create_app
from diffsem.imageio import MAX_BYTES
from services_common import auth, logs
from services_common.server import write_port_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m control_panel", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (0 = ephemeral)")
    p.add_argument("--telemetry-port", type=int, default=50060, help="Telemetry gRPC port (0 = ephemeral)")
    p.add_argument("--port-file", type=Path, default=None, help="write the bound ports here as JSON")
    p.add_argument("--transmitter", default="127.0.0.1:50051")
    p.add_argument("--emulator", default="127.0.0.1:50052")
    p.add_argument("--legit-name", default="receiver", help="the legitimate listener's name")
    p.add_argument("--max-upload-bytes", type=int, default=MAX_BYTES)
    p.add_argument("--transmit-timeout-s", type=float, default=10.0)
    p.add_argument("--sweep-file", type=Path, default=os.environ.get("DIFFSEM_SWEEP_FILE") or None,
                   help="a `diffsem eval` results.json for the dashboard's accuracy-vs-SNR chart ($DIFFSEM_SWEEP_FILE)")
    p.add_argument("--credential-file", default=None,
                   help="this panel's control credential for its gRPC calls ($DIFFSEM_CREDENTIAL_FILE)")
    p.add_argument("--auth-key-file", default=None,
                   help="authority key that verifies the listeners' telemetry ($DIFFSEM_AUTH_KEY_FILE)")
    p.add_argument("--allow-remote", action="store_true",
                   help="bind a non-loopback --host even without $DIFFSEM_PANEL_TOKEN (containers whose published "
                        "port is itself on loopback)")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = PanelSettings(args.transmitter, args.emulator, args.host, args.telemetry_port, args.legit_name,
                             args.max_upload_bytes, args.transmit_timeout_s, os.environ.get(TOKEN_ENV) or None,
                             args.sweep_file, auth.credential_from(args.credential_file),
                             auth.key_from(args.auth_key_file))
    app = create_app(settings)
    # proto=IPPROTO_TCP matters: asyncio only disables Nagle (TCP_NODELAY) on sockets whose proto says TCP,
    # and accepted sockets inherit it; with proto 0 every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.http_port))
    http_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        write_port_file(args.port_file, http=http_port, telemetry=app.state.telemetry_port)
        logs.setup("control_panel").info("control panel on http://%s:%d (telemetry gRPC port %d)", args.host,
                                          http_port, app.state.telemetry_port)

    task = asyncio.create_task(announce())
    await server.serve(sockets=[sock])
    task.cancel()


TOKEN_ENV = "DIFFSEM_PANEL_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> None:
    log = logs.setup("control_panel")
    args = parse_args(argv)
    if not os.environ.get(TOKEN_ENV) and not is_loopback(args.host) and not args.allow_remote:
        log.error("refusing to bind %s without a token: set $%s (mutating endpoints then need "
                  "'Authorization: Bearer <token>'), bind 127.0.0.1, or pass --allow-remote", args.host, TOKEN_ENV)
        sys.exit(2)
    if os.environ.get(TOKEN_ENV):
        log.info("mutating endpoints need a bearer token ($%s)", TOKEN_ENV)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
