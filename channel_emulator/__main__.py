"""``python -m channel_emulator``: run the channel emulator service (options: channel_emulator/settings.py)."""

from __future__ import annotations

from argparse import Namespace

from channel_emulator.server import ChannelEmulatorServicer, Emulator
from channel_emulator.settings import SPEC
from channel_emulator.traces import load_trace
from diffsem.config import PHY_FIELDS
from diffsem.phy import load as load_phy
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from services_common.auth import Verifier
from services_common.errors import BadRequest
from services_common.server import serve


def phy_settings(args: Namespace) -> pb.LinkSettings:
    """The physical layer the command line gives every link (the emulator checks it as any link setting)."""
    return pb.LinkSettings(**{name: getattr(args, name) for name in PHY_FIELDS})


def make_servicer(args: Namespace, verifier: Verifier) -> ChannelEmulatorServicer:
    legit = pb.LinkSettings(snr_db=args.snr_db, fading=args.fading, queue_size=args.queue_size)
    eve = pb.LinkSettings(snr_db=args.eve_snr_db, fading=args.fading, queue_size=args.queue_size)
    for settings in (legit, eve):
        settings.MergeFrom(phy_settings(args))
    emu = Emulator(args.legit_name, legit, eve, args.seed, max_links=args.max_links, grace_s=args.link_grace_s,
                   trace_dir=args.trace_dir, k=args.k, fanout=args.fanout)
    for spec in args.trace:
        name, sep, path = spec.partition("=")
        if not sep:
            raise BadRequest(f"--trace {spec!r}: use LINK=FILE")
        emu.set_trace(name, load_trace(path))
    return ChannelEmulatorServicer(emu, verifier)


def describe(args: Namespace, servicer: ChannelEmulatorServicer, host: object) -> str:
    """After the port is bound (health NOT_SERVING meanwhile): import Sionna now, not on the first frame."""
    load_phy()
    phy = f"ofdm {args.channel_model}" if args.phy == "ofdm" else "flat"
    return f"legitimate link {args.legit_name!r} ({phy}) at {args.snr_db:.1f} dB, at most {args.max_links} links"


if __name__ == "__main__":
    serve(SPEC, make_servicer, describe)
