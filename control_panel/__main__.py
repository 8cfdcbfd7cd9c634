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
from control_panel.limits import limited_protocol
from control_panel.store import StoreError, default_db_path
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
                   help="a `diffsem eval` results.json for the dashboard's accuracy-vs-SNR chart ($DIFFSEM_SWEEP_FILE; "
                        "default: the committed docs/results/mnist-headline/results.json)")
    p.add_argument("--judging-pools", type=Path, default=os.environ.get("DIFFSEM_JUDGING_POOLS") or None,
                   help="folder of judging pools for the 'Judge it yourself' page ($DIFFSEM_JUDGING_POOLS; default: "
                        "the committed docs/results/judging/pools; make more with `diffsem attack eval --pools`)")
    p.add_argument("--credential-file", default=None,
                   help="this panel's control credential for its gRPC calls ($DIFFSEM_CREDENTIAL_FILE)")
    p.add_argument("--auth-key-file", default=None,
                   help="authority key that verifies the listeners' telemetry ($DIFFSEM_AUTH_KEY_FILE)")
    p.add_argument("--db", default=os.environ.get("DIFFSEM_DB") or str(default_db_path()),
                   help="SQLite database of messages, counts, runs and sweeps ($DIFFSEM_DB; default %(default)s; "
                        "':memory:' keeps nothing across restarts)")
    p.add_argument("--retention-messages", type=int, default=1_000_000,
                   help="messages (and their reports) kept in the database; the counts keep every message")
    p.add_argument("--prune-every-s", type=float, default=30.0, help="how often the retention setting is applied")
    limits = p.add_argument_group("HTTP limits (docs/design.md, 'Bounded resources')")
    limits.add_argument("--max-connections", type=int, default=256, help="concurrent connections (503 past it)")
    limits.add_argument("--max-uploads", type=int, default=16, help="POST /api/transmit in flight (429 past it)")
    limits.add_argument("--max-runs", type=int, default=4, help="runs and sweeps in flight (429 past it)")
    limits.add_argument("--max-json-bytes", type=int, default=1 << 20, help="a JSON request body (413 past it)")
    limits.add_argument("--max-header-bytes", type=int, default=16 * 1024,
                        help="request line and headers (431 past it)")
    limits.add_argument("--body-timeout-s", type=float, default=10.0, help="time to send a request body (408)")
    limits.add_argument("--header-timeout-s", type=float, default=10.0, help="time to send a request head (408)")
    p.add_argument("--allow-remote", action="store_true",
                   help="bind a non-loopback --host even without $DIFFSEM_PANEL_TOKEN (containers whose published "
                        "port is itself on loopback)")
    return p.parse_args(argv)


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
