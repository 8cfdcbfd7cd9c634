"""What live multi-antenna links cost per batch (issue 22; docs/design.md §5, live antennas): the transmitter's side
(self-noise, precoding and the frames' symbols on the wire) and the emulator's (Feedback, then Send over the
legitimate link and one eavesdropper link, each carried and LMMSE-combined), against the single-antenna stack
(a flat Rayleigh link, a new fade every frame), with the encoder's time for scale; at n_tx = 4 also over 3GPP CDL-C
(``antennas.channel_model``) instead of i.i.d. Rayleigh, and on ofdm: TDL-A on the default 14 x 12 grid with LS
CSI fed back per RE one frame late (the core's defaults), precoded and combined per RE.

    .venv/bin/python benchmarks/live_antennas.py [--threads 1] [--batch 64] [--repeats 100] [--out FILE.json]

In process, no gRPC (the wire adds the serialisation of k n_tx float32 per frame, which the transmitter's side
counts as ``rows_to_proto``). The cases run interleaved, one of each per round, and each figure is the median
(``transmitter_batch.median_ms``).
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
from collections.abc import Callable

import torch
from transmitter_batch import Encoded, encoded, median_ms, parse  # this folder: run as a script

from channel_emulator.server import Emulator
from diffsem.antenna_path import transmit_antennas
from diffsem.framepath import transmit
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.frames import antenna_rows, header_to_proto
from services_common.tensors import rows_to_proto
from transmitter.csi import antenna_csi

T_STAR, SNR_DB = 300, 20.0


def emulator(n_tx: int, loop: asyncio.AbstractEventLoop, channel_model: str = "rayleigh", phy: str = "flat",
             k: int = 256) -> Emulator:
    """An emulator with the receiver and one eavesdropper attached (queues large enough to never drop); flat links
    fade per frame, ofdm links run the core's default channel and CSI."""
    link = {"phy": "ofdm"} if phy == "ofdm" else {"fading": "rayleigh"}
    legit = pb.LinkSettings(snr_db=SNR_DB, queue_size=8192, **link)
    if n_tx > 1:
        legit.antennas.CopyFrom(pb.AntennaSettings(n_tx=n_tx, null_space=True, beam_fraction=0.01))
        if phy == "flat":
            legit.antennas.channel_model = channel_model
    emu = Emulator("receiver", legit, pb.LinkSettings(snr_db=SNR_DB, queue_size=8192, **link), seed=0, k=k)
    emu.subscribe(common_pb2.ROLE_LEGITIMATE, "receiver", loop)
    emu.subscribe(common_pb2.ROLE_EAVESDROPPER, "eve", loop)
    return emu


def cases(enc: Encoded, b: int, emus: dict[str, tuple[Emulator, int]]) -> dict[str, Callable[[], object]]:
    """The timed calls: the encoder, the transmitter's side per n_tx, and a batch through each emulator (``emus``:
    case -> (emulator, n_tx); its call reports the seconds of its Feedback, Send and fan-out alone)."""
    bundle, s, gen = enc.bundle, enc.s, enc.gen
    replies = {n: emus[f"n_tx={n}"][0].feedback("", b) for n in (4, 8)}  # the transmitter reuses one CSI per n_tx

    def frames(rows: torch.Tensor, header: object) -> list[frame_pb2.Frame]:
        now, pr = time.time(), rows_to_proto(rows)
        return [frame_pb2.Frame(message_id=f"m{i}", seq=i, symbols=pr[i],
                                header=header_to_proto(header, i, "m", now)) for i in range(b)]  # type: ignore[arg-type]

    def tx_single() -> list[frame_pb2.Frame]:
        x, header, _ = transmit(s, T_STAR, bundle.abar, torch.full((b,), 0.01), gen)
        return frames(x, header)

    def tx_antennas(n_tx: int, reply: pb.FeedbackReply) -> list[frame_pb2.Frame]:
        fb = antenna_csi(reply, b)
        sent = transmit_antennas(s, T_STAR, bundle.abar, fb.csi, fb.n0, fb.csi_error, fb.split, n_tx, gen)
        return frames(antenna_rows(sent.x), sent.header)

    def emu_batch(emu: Emulator, n_tx: int) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            reply = emu.feedback("", b)  # the legitimate link's channel and CSI are drawn here: timed too
            fed = time.perf_counter() - t0
            fs = tx_single() if n_tx == 1 else tx_antennas(n_tx, reply)
            t0 = time.perf_counter()
            emu.send(fs)
            emu.fanout.join()
            took = fed + time.perf_counter() - t0
            for link in emu.links.values():  # empty the queues: only the channel's cost is measured
                link.subscriber.items.clear()  # type: ignore[union-attr]
            return took
        return run

    return {"encode": lambda: bundle.encoder(enc.images), "transmitter n_tx=1": tx_single,
            "transmitter n_tx=4": lambda: tx_antennas(4, replies[4]),
            "transmitter n_tx=8": lambda: tx_antennas(8, replies[8]),
            **{f"emulator {case} (receiver + 1 eavesdropper)": emu_batch(*e) for case, e in emus.items()}}


def main() -> None:
    args = parse(__doc__, threads=1, repeats=100)
    b = args.batch
    loop = asyncio.new_event_loop()
    enc = encoded(b)
    emus = {f"n_tx={n}": (emulator(n, loop), n) for n in (1, 4, 8)}
    emus["n_tx=4 over CDL-C"] = (emulator(4, loop, "CDL-C"), 4)
    emus["n_tx=4 on ofdm TDL-A"] = (emulator(4, loop, phy="ofdm", k=enc.bundle.cfg.k), 4)
    med = median_ms(cases(enc, b, emus), args.repeats)
    for name, ms in med.items():
        print(f"{name:<48} {ms:8.3f} ms per batch of {b}")
    print(f"transmitter, n_tx=4 over n_tx=1: +{med['transmitter n_tx=4'] - med['transmitter n_tx=1']:.3f} ms "
          f"= {100 * (med['transmitter n_tx=4'] - med['transmitter n_tx=1']) / med['encode']:.1f}% of the encode")
    emu = {case: med[f"emulator {case} (receiver + 1 eavesdropper)"] for case in emus}
    print(f"emulator at n_tx=4: over CDL-C x{emu['n_tx=4 over CDL-C'] / emu['n_tx=4']:.1f}, "
          f"on ofdm TDL-A x{emu['n_tx=4 on ofdm TDL-A'] / emu['n_tx=4']:.1f} the flat Rayleigh link's")
    for e, _ in emus.values():
        e.close()
    if args.out:
        args.out.write_text(json.dumps({"batch": b, "threads": args.threads, "repeats": args.repeats,
                                        "median_ms": med, "machine": platform.platform(),
                                        "cpu": platform.processor()}, indent=1))


if __name__ == "__main__":
    main()
