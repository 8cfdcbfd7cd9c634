"""What live multi-antenna links cost per batch (issue 22; docs/design.md §5, live antennas): the transmitter's side
(self-noise, precoding and the frames' symbols on the wire) and the emulator's (Feedback, then Send over the
legitimate link and one eavesdropper link, each carried and LMMSE-combined), against the single-antenna stack
(a flat Rayleigh link, a new fade every frame), with the encoder's time for scale.

    .venv/bin/python benchmarks/live_antennas.py [--threads 1] [--batch 64] [--repeats 100] [--out FILE.json]

In process, no gRPC (the wire adds the serialisation of k n_tx float32 per frame, which the transmitter's side
counts as ``rows_to_proto``). The cases run interleaved, one of each per round, and each figure is the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from channel_emulator.server import Emulator
from diffsem.antenna_path import transmit_antennas
from diffsem.bundle import load_bundle
from diffsem.defaults import checkpoint_dir
from diffsem.framepath import transmit
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.frames import antenna_rows, header_to_proto
from services_common.tensors import rows_to_proto
from transmitter.csi import antenna_csi

T_STAR, SNR_DB = 300, 20.0


def emulator(n_tx: int, loop: asyncio.AbstractEventLoop) -> Emulator:
    """An emulator with the receiver and one eavesdropper attached (queues large enough to never drop)."""
    legit = pb.LinkSettings(snr_db=SNR_DB, fading="rayleigh", queue_size=8192)
    if n_tx > 1:
        legit.antennas.CopyFrom(pb.AntennaSettings(n_tx=n_tx, null_space=True, beam_fraction=0.01))
    emu = Emulator("receiver", legit, pb.LinkSettings(snr_db=SNR_DB, fading="rayleigh", queue_size=8192), seed=0)
    emu.subscribe(common_pb2.ROLE_LEGITIMATE, "receiver", loop)
    emu.subscribe(common_pb2.ROLE_EAVESDROPPER, "eve", loop)
    return emu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_bundle(checkpoint_dir("mnist"), device="cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 1, 28, 28, generator=gen)
    with torch.no_grad():
        s = bundle.encoder(images)
    b = args.batch
    loop = asyncio.new_event_loop()
    emus = {n: emulator(n, loop) for n in (1, 4, 8)}
    replies = {n: emus[n].feedback("", b) for n in (4, 8)}  # the transmitter's side reuses one CSI per n_tx

    def frames(rows: torch.Tensor, header: object) -> list[frame_pb2.Frame]:
        now, pr = time.time(), rows_to_proto(rows)
        return [frame_pb2.Frame(message_id=f"m{i}", seq=i, symbols=pr[i],
                                header=header_to_proto(header, i, "m", now)) for i in range(b)]  # type: ignore[arg-type]

    def tx_single() -> list[frame_pb2.Frame]:
        x, header, _ = transmit(s, T_STAR, bundle.abar, torch.full((b,), 0.01), gen)
        return frames(x, header)

    def tx_antennas(n_tx: int) -> Callable[[], list[frame_pb2.Frame]]:
        fb = antenna_csi(replies[n_tx], b)

        def run() -> list[frame_pb2.Frame]:
            sent = transmit_antennas(s, T_STAR, bundle.abar, fb.csi, fb.n0, fb.csi_error, fb.split, n_tx, gen)
            return frames(antenna_rows(sent.x), sent.header)
        return run

    def emu_batch(n_tx: int) -> Callable[[], object]:
        emu = emus[n_tx]

        def run() -> None:
            reply = emu.feedback("", b)
            if n_tx == 1:
                fs = tx_single()
            else:
                fb = antenna_csi(reply, b)
                sent = transmit_antennas(s, T_STAR, bundle.abar, fb.csi, fb.n0, fb.csi_error, fb.split, n_tx, gen)
                fs = frames(antenna_rows(sent.x), sent.header)
            t0 = time.perf_counter()
            emu.send(fs)
            emu.fanout.join()
            run.emulator_s = time.perf_counter() - t0  # type: ignore[attr-defined]
            for link in emu.links.values():  # empty the queues: only the channel's cost is measured
                link.subscriber.items.clear()  # type: ignore[union-attr]
        return run

    tx_cases: dict[str, Callable[[], object]] = {
        "encode": lambda: bundle.encoder(images),
        "transmitter n_tx=1": tx_single, "transmitter n_tx=4": tx_antennas(4), "transmitter n_tx=8": tx_antennas(8)}
    emu_cases = {f"emulator n_tx={n} (receiver + 1 eavesdropper)": emu_batch(n) for n in (1, 4, 8)}
    times: dict[str, list[float]] = {name: [] for name in (*tx_cases, *emu_cases)}
    with torch.no_grad():
        for fn in {**tx_cases, **emu_cases}.values():  # warm-up (Sionna's first calls)
            fn()
        for _ in range(args.repeats):
            for name, fn in tx_cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
            for name, fn in emu_cases.items():
                fn()
                times[name].append(fn.emulator_s)  # type: ignore[attr-defined]
    med = {name: statistics.median(v) * 1e3 for name, v in times.items()}
    for name, ms in med.items():
        print(f"{name:<48} {ms:8.3f} ms per batch of {b}")
    print(f"transmitter, n_tx=4 over n_tx=1: +{med['transmitter n_tx=4'] - med['transmitter n_tx=1']:.3f} ms "
          f"= {100 * (med['transmitter n_tx=4'] - med['transmitter n_tx=1']) / med['encode']:.1f}% of the encode")
    for e in emus.values():
        e.close()
    if args.out:
        args.out.write_text(json.dumps({"batch": b, "threads": args.threads, "repeats": args.repeats,
                                        "median_ms": med, "machine": platform.platform(),
                                        "cpu": platform.processor()}, indent=1))


if __name__ == "__main__":
    main()
