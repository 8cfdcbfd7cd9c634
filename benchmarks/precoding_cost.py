"""What null-space precoding adds to the transmitter: time per batch of the encoder, of today's self-noise
(``framepath.transmit``) and of the multi-antenna transmitter (``antenna_path.transmit_antennas``: beam, null space,
self-noise, precoding), at batch 64 by default.

    .venv/bin/python benchmarks/precoding_cost.py [--threads 2] [--batch 64] [--repeats 200] [--out FILE.json]

The cases run interleaved, one call of each per round, so a loaded machine slows them alike; each figure is the
median over the rounds. The precoding cost is (transmit_antennas - transmit) / encode: the issue's target is at most
10% per frame. CSI is one matrix per frame (flat links) or one per symbol (``per-RE``, the ofdm case, n_tx = 4).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable

import torch
from transmitter_batch import encoded, median_ms, parse  # this folder: run as a script

from diffsem.antenna_path import transmit_antennas
from diffsem.framepath import transmit
from diffsem.phy.nullspace import NullSpaceConfig

T_STAR = 300
N0 = 0.01  # 20 dB


def main() -> None:
    args = parse(__doc__, threads=2, repeats=200)
    enc = encoded(args.batch)
    bundle, s, gen = enc.bundle, enc.s, enc.gen
    k = s.shape[1]

    def antennas(n_tx: int, m: int) -> Callable[[], object]:
        csi = torch.randn((args.batch, m, 1, n_tx), generator=gen, dtype=torch.complex64)
        split = NullSpaceConfig(beam_fraction=0.01 if n_tx > 1 else 1.0, null_space=n_tx > 1)
        return lambda: transmit_antennas(s, T_STAR, bundle.abar, csi, N0, 0.0, split, n_tx, gen)

    cases: dict[str, Callable[[], object]] = {
        "encode": lambda: bundle.encoder(enc.images),
        "transmit (today)": lambda: transmit(s, T_STAR, bundle.abar, torch.full((args.batch,), N0), gen),
        **{f"transmit_antennas n_tx={n}": antennas(n, 1) for n in (1, 2, 4, 8)},
        "transmit_antennas n_tx=4 per-RE": antennas(4, k // 2),
    }
    med = median_ms(cases, args.repeats)
    rows = [{"case": name, "ms": round(ms, 3),
             "extra_vs_encode_pct": None if not name.startswith("transmit_antennas")
             else round(100 * (ms - med["transmit (today)"]) / med["encode"], 1)} for name, ms in med.items()]
    for r in rows:
        extra = "" if r["extra_vs_encode_pct"] is None else f"   precoding adds {r['extra_vs_encode_pct']}% of encode"
        print(f"{r['case']:34s} {r['ms']:8.3f} ms{extra}")
    if args.out:
        args.out.write_text(json.dumps({"batch": args.batch, "threads": args.threads, "repeats": args.repeats,
                                        "machine": platform.platform(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
