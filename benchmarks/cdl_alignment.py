"""How much of an independent eavesdropper's channel lies along the legitimate one, per channel model: the mean of
|<h, g>|^2 / (|h|^2 |g|^2) over frames, for two multi-antenna links with different seeds (one receive antenna each).
i.i.d. Rayleigh with n_t antennas gives 1 / n_t; the rest of g (1 minus this) is what the null-space self-noise
reaches (docs/design.md §3, multi-antenna links and null-space self-noise).

    .venv/bin/python benchmarks/cdl_alignment.py [--n-tx 4] [--frames 500]
"""

from __future__ import annotations

import argparse

import torch

from diffsem.config import ARRAY_MODELS, LinkConfig
from diffsem.phy.antennas import AntennaConfig, MimoLink


def alignment(model: str, n_tx: int, frames: int) -> float:
    arr = AntennaConfig(n_tx=n_tx, channel_model=model)
    h, g = (MimoLink(LinkConfig(snr_db=20.0), arr, torch.Generator().manual_seed(seed)).draw(frames).h[:, 0, 0]
            for seed in (1, 2))
    return float(((h.conj() * g).sum(-1).abs() / (h.norm(dim=-1) * g.norm(dim=-1))).pow(2).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-tx", type=int, default=4)
    ap.add_argument("--frames", type=int, default=500)
    args = ap.parse_args()
    print(f"n_tx = {args.n_tx}, {args.frames} frames; i.i.d. reference 1/n_tx = {1 / args.n_tx:.3f}")
    for model in ARRAY_MODELS:
        print(f"{model:9s} {alignment(model, args.n_tx, args.frames):.3f}")


if __name__ == "__main__":
    main()
