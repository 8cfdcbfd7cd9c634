"""``python -m receiver``: run the legitimate receiver service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from diffsem.bundle import load_bundle
from diffsem.config import CLASSIFIERS, DECODE_MODES
from diffsem.keyed import KEY_ENV, load_key
from protos.diffsem.v1 import receiver_pb2, receiver_pb2_grpc
from receiver.server import Receiver, ReceiverServicer
from services_common import logs
from services_common.options import add_listener_options, add_model_options, add_server_options
from services_common.server import ServiceHost, run_or_exit, write_port_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m receiver", description=__doc__)
    add_server_options(p, 50053)
    add_listener_options(p)
    add_model_options(p)
    p.add_argument("--name", default="receiver", help="the emulator's legitimate link name")
    p.add_argument("--mode", choices=DECODE_MODES, default="selfref")
    p.add_argument("--classifier", choices=CLASSIFIERS, default="matched",
                   help="matched: noise-aware at every level; channel: trained for the channel only (paper baseline)")
    p.add_argument("--steps", type=int, default=1, help="reverse steps per diffusion decode")
    p.add_argument("--eta", type=float, default=0.0, help="0 = DDIM, 1 = DDPM-like")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--key-file", type=Path, default=None,
                   help=f"keyed self-noise secret shared with the transmitter (default: ${KEY_ENV} in hex, if set)")
    return p.parse_args(argv)


def _fail(host: ServiceHost) -> None:
    host.exit_code = 1
    host.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = logs.setup("receiver")
    if args.threads:
        torch.set_num_threads(args.threads)
    host = ServiceHost([receiver_pb2.DESCRIPTOR.services_by_name["Receiver"].full_name])
    servicer = ReceiverServicer()
    host.add(receiver_pb2_grpc.add_ReceiverServicer_to_server, servicer)
    port = host.start(args.host, args.port)
    write_port_file(args.port_file, grpc=port)

    def load() -> None:
        bundle = load_bundle(args.checkpoints, device=args.device)
        log.info("model %s on %s (%s)", bundle.model_id, bundle.device,
                 "CUDA" if bundle.device.type == "cuda" else "CPU: no CUDA device" if args.device == "auto" else "CPU")
        key = load_key(args.key_file) if args.key_file or os.environ.get(KEY_ENV) else None
        rx = Receiver(bundle, args.mode, args.steps, args.eta, args.name, args.classifier, key)
        loop = None
        if args.emulator:
            loop = rx.listen(args.emulator, args.telemetry or None, args.max_batch, args.max_wait_ms)
        if loop is not None:
            loop.on_fatal = lambda msg: _fail(host)
            host.on_stop(loop.stop)
        servicer.ready(rx, loop)
        host.set_serving(True)
        log.info("receiver on %s:%d, decoder %s, batches of <= %d within %.1f ms, %s", args.host, port, rx.method,
                 args.max_batch, args.max_wait_ms, "self-noise key loaded" if key else "no self-noise key")

    run_or_exit(host, load, log)


if __name__ == "__main__":
    main()
