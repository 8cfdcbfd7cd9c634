"""``python -m channel_emulator``: run the channel emulator service."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from channel_emulator.links import LinkParams
from channel_emulator.server import ChannelEmulatorServicer, Emulator
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc
from services_common import logs
from services_common.server import ServiceHost, write_port_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m channel_emulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50052, help="gRPC port (0 = ephemeral)")
    p.add_argument("--port-file", type=Path, default=None, help="write the bound port here as JSON")
    p.add_argument("--seed", type=int, default=0, help="base seed; each link's noise is seeded from it and its name")
    p.add_argument("--legit-name", default="receiver", help="name of the legitimate link")
    p.add_argument("--snr-db", type=float, default=10.0, help="legitimate link SNR (dB)")
    p.add_argument("--fading", choices=["none", "rayleigh", "rician"], default="none")
    p.add_argument("--eve-snr-db", type=float, default=10.0, help="default SNR of a new eavesdropper link")
    p.add_argument("--queue-size", type=int, default=4096, help="per-listener queue bound (frames)")
    p.add_argument("--trace", action="append", default=[], metavar="LINK=FILE",
                   help="SNR trace file for a link (JSON or CSV, see channel_emulator/traces.py)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log = logs.setup("channel_emulator")
    torch.set_num_threads(args.threads)
    legit = LinkParams(seed=0, snr_db=args.snr_db, fading=args.fading, queue_size=args.queue_size)
    eve = LinkParams(seed=0, snr_db=args.eve_snr_db, fading=args.fading, queue_size=args.queue_size)
    emu = Emulator(args.legit_name, legit, eve, args.seed)
    for spec in args.trace:
        name, _, path = spec.partition("=")
        emu.configure([pb.LinkUpdate(name=name, settings=pb.LinkSettings(trace=pb.SnrTrace(file=path)))])
    host = ServiceHost([pb.DESCRIPTOR.services_by_name["ChannelEmulator"].full_name], max_workers=64)
    host.add(pb_grpc.add_ChannelEmulatorServicer_to_server, ChannelEmulatorServicer(emu))
    port = host.start(args.host, args.port)
    host.set_serving(True)
    write_port_file(args.port_file, grpc=port)
    log.info("channel emulator on %s:%d (legitimate link %r at %.1f dB)", args.host, port, args.legit_name, args.snr_db)
    host.wait_for_signal()


if __name__ == "__main__":
    main()
