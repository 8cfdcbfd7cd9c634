"""``python -m channel_emulator``: run the channel emulator service (options: channel_emulator/settings.py)."""

from __future__ import annotations

from argparse import Namespace

from channel_emulator.antennas import NULL_SPACE_BEAM_FRACTION, unused_fields
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


def eavesdropper_links(specs: list[str]) -> dict[str, pb.LinkSettings]:
    """``--eavesdropper-link NAME=[OFFSET_DB][:N_RX]`` options as the settings of those links (the emulator checks
    them)."""
    out = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        offset, _, n_rx = value.partition(":")
        try:
            out[name] = pb.LinkSettings()
            if offset or not n_rx:
                out[name].snr_offset_db = float(offset)
            if n_rx:
                out[name].antennas.n_rx = int(n_rx)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise BadRequest(f"--eavesdropper-link {spec!r}: use NAME=OFFSET_DB, NAME=OFFSET_DB:N_RX or NAME=:N_RX, "
                             "e.g. eve=-5 or eve=0:2")
    return out


# the antennas' fields a flat link uses and an ofdm link does not (antennas.unused_fields): their option, and the
# ofdm link's own option of the same meaning
FLAT_ARRAY_OPTIONS = {"estimator": ("csi_estimator", "--estimator"), "feedback_delay": ("csi_delay", "--feedback-delay"),
                      "speed_kmh": ("csi_speed_kmh", "--speed-kmh"), "channel_model": ("antenna_channel", "--channel-model")}


def antenna_settings(args: Namespace) -> pb.AntennaSettings:
    """The legitimate link's antennas, the transmitter's power split and the CSI fed back, from the command line.
    On ofdm the CSI and the channel are the link's own options: the flat ones must keep their defaults there."""
    beam = args.beam_fraction if args.beam_fraction is not None else \
        NULL_SPACE_BEAM_FRACTION if args.null_space else 1.0
    out = pb.AntennaSettings(n_tx=args.n_tx, n_rx=args.n_rx, null_space=args.null_space, beam_fraction=beam)
    unused = unused_fields(args.phy)
    out.MergeFrom(pb.AntennaSettings(**{f: getattr(args, dest) for f, (dest, _) in FLAT_ARRAY_OPTIONS.items()
                                        if f not in unused}))
    moved = [f"{SPEC.option(dest).flag} (use {flag})" for f, (dest, flag) in FLAT_ARRAY_OPTIONS.items()
             if f in unused and getattr(args, dest) != SPEC.option(dest).default]
    if moved:
        raise BadRequest(f"{', '.join(moved)}: on --phy ofdm the CSI and the channel are the link's own options")
    return out


def make_servicer(args: Namespace, verifier: Verifier) -> ChannelEmulatorServicer:
    legit = pb.LinkSettings(snr_db=args.snr_db, fading=args.fading, queue_size=args.queue_size)
    eve = pb.LinkSettings(snr_db=args.snr_db if args.eve_snr_db is None else args.eve_snr_db, fading=args.fading,
                          queue_size=args.queue_size)
    if args.eve_snr_offset_db is not None or args.eve_snr_db is None:  # by default at the legitimate link's SNR
        eve.snr_offset_db = args.eve_snr_offset_db or 0.0
    for settings in (legit, eve):
        settings.MergeFrom(phy_settings(args))
    legit.antennas.CopyFrom(antenna_settings(args))
    eve.antennas.n_rx = args.eve_n_rx
    eve.antennas.correlation = args.eve_correlation
    emu = Emulator(args.legit_name, legit, eve, args.seed, max_links=args.max_links, grace_s=args.link_grace_s,
                   trace_dir=args.trace_dir, k=args.k, eve_links=eavesdropper_links(args.eavesdropper_link),
                   fanout=args.fanout)
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
    if args.n_tx > 1:  # on ofdm the channel and the CSI are the ofdm settings' (channel_emulator.antennas)
        phy += f", {args.n_tx} transmit antennas" + ("" if args.phy == "ofdm" else f" over {args.antenna_channel}") + \
            (", null-space self-noise" if args.null_space else "") + (" per RE" if args.phy == "ofdm" else "")
        if args.phy != "ofdm" and (args.csi_estimator != "perfect" or args.csi_delay):
            phy += f", {args.csi_estimator} CSI {args.csi_delay} frames late at {args.csi_speed_kmh:g} km/h"
    noise = "from the OS" if args.seed is None else "seeded: known to anyone who knows the seed"
    return (f"legitimate link {args.legit_name!r} ({phy}) at {args.snr_db:.1f} dB, at most {args.max_links} links, "
            f"link noise {noise}")


if __name__ == "__main__":
    serve(SPEC, make_servicer, describe)
