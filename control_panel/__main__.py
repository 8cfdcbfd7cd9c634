"""``python -m control_panel``: the HTTP API + dashboard and the Telemetry gRPC server, in one process (options:
control_panel/settings.py)."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import socket
import sys

import uvicorn

from control_panel.app import PanelSettings, create_app
from control_panel.limits import limited_protocol
from control_panel.settings import SPEC
from control_panel.store import StoreError
from services_common import auth, logs
from services_common.server import write_port_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return SPEC.parse(argv)


async def serve(args: argparse.Namespace) -> None:
    settings = PanelSettings(
        transmitter=args.transmitter, emulator=args.emulator, telemetry_host=args.host,
        telemetry_port=args.telemetry_port, legit=args.legit_name, max_upload_bytes=args.max_upload_bytes,
        transmit_timeout_s=args.transmit_timeout_s, token=os.environ.get(TOKEN_ENV) or None,
        credential=auth.credential_from(args.credential_file), auth_key=auth.key_from(args.auth_key_file),
        db=args.db, retention_messages=args.retention_messages, prune_every_s=args.prune_every_s,
        max_runs=args.max_runs, max_uploads=args.max_uploads, max_json_bytes=args.max_json_bytes,
        body_timeout_s=args.body_timeout_s)
    if args.sweep_file is not None:
        settings.sweep_file = args.sweep_file
    if args.judging_pools is not None:
        settings.judging_pools = args.judging_pools
    app = create_app(settings)
    # proto=IPPROTO_TCP matters: asyncio only disables Nagle (TCP_NODELAY) on sockets whose proto says TCP,
    # and accepted sockets inherit it; with proto 0 every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.http_port))
    http_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5,
                            http=limited_protocol(args.max_header_bytes, args.header_timeout_s),
                            h11_max_incomplete_event_size=args.max_header_bytes,
                            limit_concurrency=args.max_connections)
    server = uvicorn.Server(config)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        telemetry_port = app.state.panel.telemetry_port
        write_port_file(args.port_file, http=http_port, telemetry=telemetry_port)
        logs.setup("control_panel").info("control panel on http://%s:%d (telemetry gRPC port %d)", args.host,
                                          http_port, telemetry_port)

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
    try:
        asyncio.run(serve(args))
    except StoreError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
