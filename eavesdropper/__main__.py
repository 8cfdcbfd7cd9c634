"""``python -m eavesdropper``: run one eavesdropper (a name, an attack, its own link)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffsem.bundle import EAVESDROPPER_PARTS, load_bundle
from eavesdropper.attacks import known_attacks
from eavesdropper.server import Eavesdropper, EavesdropperServicer
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import eavesdropper_pb2, eavesdropper_pb2_grpc
from services_common import logs
from services_common.options import add_listener_options, add_model_options, add_server_options
from services_common.server import ServiceHost, run_or_exit, write_port_file


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eavesdropper", description=__doc__)
    add_server_options(p, 50054)
    add_listener_options(p)
    add_model_options(p, "folder with bundle.json, the eavesdropper and judge parts, and attacks/ "
                         "(the transmitter's encoder is not read from it)")
    p.add_argument("--name", default="eve", help="this eavesdropper's link name")
    p.add_argument("--attack", default="feature-classifier", help="attack name (--list-attacks)")
    p.add_argument("--list-attacks", action="store_true", help="print the known attacks and exit")
    p.add_argument("--attack-checkpoint", type=Path, default=None,
                   help="trained attack weights (default: <checkpoints>/attacks/<attack>.safetensors)")
    p.add_argument("--transmitter-checkpoint", type=Path, default=None,
                   help="enables whitebox-inversion: the transmitter checkpoint folder whose encoder it reads")
    p.add_argument("--snr-offset-db", type=float, default=None,
                   help="when this link is created: follow the legitimate SNR plus this offset (dB)")
    p.add_argument("--snr-db", type=float, default=None, help="when this link is created: its SNR (dB)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


def _fail(host: ServiceHost) -> None:
    host.exit_code = 1
    host.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list_attacks:
        print("\n".join(known_attacks()))
        return
    log = logs.setup(f"eavesdropper[{args.name}]")
    if args.attack not in known_attacks():
        log.error("unknown attack %r; known attacks: %s", args.attack, ", ".join(known_attacks()))
        sys.exit(2)
    torch.set_num_threads(args.threads)
    host = ServiceHost([eavesdropper_pb2.DESCRIPTOR.services_by_name["Eavesdropper"].full_name])
    servicer = EavesdropperServicer()
    host.add(eavesdropper_pb2_grpc.add_EavesdropperServicer_to_server, servicer)
    port = host.start(args.host, args.port)
    write_port_file(args.port_file, grpc=port)
    defaults = ch_pb.LinkSettings()
    if args.snr_offset_db is not None:
        defaults.snr_offset_db = args.snr_offset_db
    if args.snr_db is not None:
        defaults.snr_db = args.snr_db

    def load() -> None:
        bundle = load_bundle(args.checkpoints, device=args.device, parts=EAVESDROPPER_PARTS)
        options: dict[str, object] = {}
        if args.transmitter_checkpoint is not None:
            options["transmitter_checkpoint"] = args.transmitter_checkpoint
        options["checkpoint_root"] = args.checkpoints
        eve = Eavesdropper(bundle, args.name, args.attack, options, args.attack_checkpoint)
        loop = None
        if args.emulator:
            loop = eve.listen(args.emulator, args.telemetry or None, args.max_batch, args.max_wait_ms, defaults)
            loop.on_fatal = lambda msg: _fail(host)
            host.on_stop(loop.stop)
        servicer.ready(eve, loop)
        host.set_serving(True)
        log.info("eavesdropper %r (%s) on %s:%d, model %s on %s", args.name, args.attack, args.host, port,
                 bundle.model_id, bundle.device)

    run_or_exit(host, load, log)


if __name__ == "__main__":
    main()
