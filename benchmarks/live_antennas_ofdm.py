"""What one live multi-antenna batch costs the emulator on an ofdm link against a flat one (issue 22; docs/design.md
§5, live antennas): ``Feedback`` (the legitimate link's channel of the next B frames and its CSI, per RE on ofdm) and
``Send`` (p_null from the headers, the legitimate link and one eavesdropper link carried and LMMSE-combined, per RE
on ofdm; fan-out included), n_tx = 4, null-space self-noise with 1% on the beam, 20 dB, k = 256.

    .venv/bin/python benchmarks/live_antennas_ofdm.py [--threads 1] [--batch 64] [--repeats 30] [--out FILE.json]

In process, no gRPC; the transmitter's precoding runs between the two calls and is not timed. The two cases run
interleaved, one of each per round, after one warm-up round; each figure is the median over the rounds, so the
ratio compares the two under the same load. The ofdm link is TDL-A on a 14 x 12 grid with LS CSI fed back per RE
one frame late (the core's defaults); the flat one i.i.d. Rayleigh with perfect CSI.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import time

import torch
from transmitter_batch import parse  # this folder: run as a script

from channel_emulator.server import Emulator
from diffsem.antenna_path import transmit_antennas
from diffsem.config import ModelConfig
from diffsem.diffusion import alphas_cumprod
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.frames import antenna_rows, header_to_proto
from services_common.tensors import rows_to_proto
from transmitter.csi import antenna_csi

T_STAR, SNR_DB, K, N_TX = 300, 20.0, 256, 4


def emulator(phy: str, loop: asyncio.AbstractEventLoop) -> Emulator:
    """An emulator on ``phy`` with the receiver and one eavesdropper attached (queues never full)."""
    links = [pb.LinkSettings(snr_db=SNR_DB, phy=phy, queue_size=8192) for _ in range(2)]
    links[0].antennas.CopyFrom(pb.AntennaSettings(n_tx=N_TX, null_space=True, beam_fraction=0.01))
    emu = Emulator("receiver", links[0], links[1], seed=0, k=K)
    emu.subscribe(common_pb2.ROLE_LEGITIMATE, "receiver", loop)
    emu.subscribe(common_pb2.ROLE_EAVESDROPPER, "eve", loop)
    return emu


def one_batch(emu: Emulator, s: torch.Tensor, abar: torch.Tensor, gen: torch.Generator) -> tuple[float, float]:
    """Seconds of the batch's Feedback and of its Send (fan-out included)."""
    b = s.shape[0]
    t0 = time.perf_counter()
    reply = emu.feedback("", b)
    fed = time.perf_counter() - t0
    fb = antenna_csi(reply, b)
    sent = transmit_antennas(s, T_STAR, abar, fb.csi, fb.n0, fb.csi_error, fb.split, fb.n_tx, gen)
    rows, now = rows_to_proto(antenna_rows(sent.x)), time.time()
    frames = [frame_pb2.Frame(message_id=f"m{i}", seq=i, symbols=rows[i],
                              header=header_to_proto(sent.header, i, "m", now)) for i in range(b)]
    t0 = time.perf_counter()
    emu.send(frames)
    emu.fanout.join()
    took = time.perf_counter() - t0
    for link in emu.links.values():  # empty the queues: only the channel's cost is measured
        link.subscriber.items.clear()  # type: ignore[union-attr]
    return fed, took


def main() -> None:
    args = parse(__doc__, threads=1, repeats=30)
    loop = asyncio.new_event_loop()
    emus = {phy: emulator(phy, loop) for phy in ("flat", "ofdm")}
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(args.batch, K, generator=gen)
    s = s / s.pow(2).mean(1, keepdim=True).sqrt()
    abar = alphas_cumprod(ModelConfig())
    times: dict[str, list[tuple[float, float]]] = {phy: [] for phy in emus}
    with torch.no_grad():
        for _ in range(args.repeats + 1):
            for phy, emu in emus.items():
                times[phy].append(one_batch(emu, s, abar, gen))
    med = {phy: {part: statistics.median(t[i] for t in ts[1:]) * 1e3 for i, part in enumerate(("feedback", "send"))}
           for phy, ts in times.items()}
    for phy, m in med.items():
        print(f"{phy:5s} n_tx={N_TX}: Feedback {m['feedback']:8.2f} ms, Send {m['send']:8.2f} ms, "
              f"together {m['feedback'] + m['send']:8.2f} ms per batch of {args.batch}")
    ratio = {part: med["ofdm"][part] / med["flat"][part] for part in ("feedback", "send")}
    total = sum(med["ofdm"].values()) / sum(med["flat"].values())
    print(f"ofdm / flat: Feedback x{ratio['feedback']:.2f}, Send x{ratio['send']:.2f}, together x{total:.2f}")
    for e in emus.values():
        e.close()
    if args.out:
        args.out.write_text(json.dumps({"batch": args.batch, "threads": args.threads, "repeats": args.repeats,
                                        "median_ms": med, "ratio": {**ratio, "together": total},
                                        "machine": platform.platform(), "cpu": platform.processor()}, indent=1))


if __name__ == "__main__":
    main()
