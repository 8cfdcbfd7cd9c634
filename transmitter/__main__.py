"""``python -m transmitter``: run the transmitter service."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffsem.bundle import checkpoint_dir, load_bundle
from protos.diffsem.v1 import transmitter_pb2 as pb
from protos.diffsem.v1 import transmitter_pb2_grpc as pb_grpc
from services_common import logs
from services_common.server import ServiceHost, run_or_exit, write_port_file
from transmitter.server import Transmitter, TransmitterServicer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m transmitter", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051, help="gRPC port (0 = ephemeral)")
    p.add_argument("--port-file", type=Path, default=None)
    p.add_argument("--emulator", default="127.0.0.1:50052", help="channel emulator address")
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--t-star", type=int, default=300, help="privacy level t* in [0, T)")
    p.add_argument("--no-self-noise", action="store_true", help="send plain frames (a = 1)")
    p.add_argument("--seed", type=int, default=0, help="self-noise generator seed")
    p.add_argument("--legit-link", default="receiver", help="the emulator's legitimate link (CSI feedback)")
    p.add_argument("--csi-max-age-ms", type=float, default=20.0, help="refresh the CSI when older than this")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = logs.setup("transmitter")
    torch.set_num_threads(args.threads)
    host = ServiceHost([pb.DESCRIPTOR.services_by_name["Transmitter"].full_name])
    servicer = TransmitterServicer()
    host.add(pb_grpc.add_TransmitterServicer_to_server, servicer)
    port = host.start(args.host, args.port)
    write_port_file(args.port_file, grpc=port)

    def load() -> None:
        bundle = load_bundle(args.checkpoints, device=args.device)
        t_star = None if args.no_self_noise else args.t_star
        servicer.ready(Transmitter(bundle, args.emulator, args.legit_link, t_star, args.seed,
                                   args.csi_max_age_ms / 1000.0))
        host.set_serving(True)
        log.info("transmitter on %s:%d, model %s on %s, t*=%s, emulator %s", args.host, port, bundle.model_id,
                 bundle.device, t_star, args.emulator)

    run_or_exit(host, load, log)


if __name__ == "__main__":
    main()
