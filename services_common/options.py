"""Command-line options shared by the services, so each is defined (and documented) once."""

from __future__ import annotations

import argparse
from pathlib import Path

from diffsem.bundle import checkpoint_dir


def add_server_options(p: argparse.ArgumentParser, port: int) -> None:
    """--host, --port (0 = ephemeral), --port-file."""
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port, help="gRPC port (0 = ephemeral)")
    p.add_argument("--port-file", type=Path, default=None, help="write the bound port(s) here as JSON")


def add_model_options(p: argparse.ArgumentParser, checkpoints_help: str = "checkpoint bundle folder") -> None:
    """--checkpoints, --device."""
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"), help=checkpoints_help)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def add_listener_options(p: argparse.ArgumentParser) -> None:
    """What a listener (receiver, eavesdropper) subscribes to, reports to, and how it batches frames."""
    p.add_argument("--emulator", default="127.0.0.1:50052", help="channel emulator address ('' = do not listen)")
    p.add_argument("--telemetry", default="127.0.0.1:50060", help="control panel telemetry address ('' = none)")
    p.add_argument("--max-batch", type=int, default=64, help="dynamic batching: most frames per decode")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="dynamic batching: longest wait for more frames")
