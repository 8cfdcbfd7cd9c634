"""``python -m transmitter``: run the transmitter service."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffsem.bundle import load_bundle
from diffsem.keyed import KEY_ENV, load_key
from protos.diffsem.v1 import transmitter_pb2 as pb
from protos.diffsem.v1 import transmitter_pb2_grpc as pb_grpc
from services_common import logs
from services_common.options import add_model_options, add_server_options
from services_common.server import ServiceHost, run_or_exit, write_port_file
from transmitter.server import Transmitter, TransmitterServicer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m transmitter", description=__doc__)
    add_server_options(p, 50051)
    add_model_options(p)
    p.add_argument("--emulator", default="127.0.0.1:50052", help="channel emulator address")
    p.add_argument("--t-star", type=int, default=300, help="privacy level t* in [0, T)")
    p.add_argument("--no-self-noise", action="store_true", help="send plain frames (a = 1)")
    p.add_argument("--seed", type=int, default=0, help="self-noise generator seed")
    p.add_argument("--self-noise", choices=["random", "keyed"], default="random",
                   help=f"keyed: eps_self from a secret shared with the receiver (--key-file, else ${KEY_ENV} in hex)")
    p.add_argument("--key-file", type=Path, default=None, help="keyed self-noise secret (raw bytes or hex)")
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
        key = load_key(args.key_file) if args.self_noise == "keyed" else None
        servicer.ready(Transmitter(bundle, args.emulator, args.legit_link, t_star, args.seed,
                                   args.csi_max_age_ms / 1000.0, key))
        host.set_serving(True)
        log.info("transmitter on %s:%d, model %s on %s, t*=%s, %s self-noise, emulator %s", args.host, port,
                 bundle.model_id, bundle.device, t_star, args.self_noise, args.emulator)

    run_or_exit(host, load, log)


if __name__ == "__main__":
    main()
