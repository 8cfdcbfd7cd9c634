"""How often the matched classifier's ``selfref`` decision differs from its ``direct`` one (docs/design.md §3).

    .venv/bin/python benchmarks/selfref_vs_direct.py [--n 2000] [--snr-db 10] [--t-star 300] [--seed 0]

``selfref`` conditions the U-Net on the ``direct`` label and classifies the denoised latent, so with the matched
classifier it usually repeats ``direct``; this counts, on the first ``n`` MNIST test images through the evaluator's
frame path (:func:`diffsem.framepath.condition_links`, seeded as ``diffsem eval`` seeds it), the images where the two
decisions differ and how each fares. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from diffsem.bundle import encode_all, load_bundle  # noqa: E402
from diffsem.data import load_split  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from diffsem.framepath import LEGIT, condition_links, send  # noqa: E402
from diffsem.receiver import DiffusionReceiver  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--snr-db", type=float, default=10.0)
    p.add_argument("--t-star", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    bundle = load_bundle(args.checkpoints, device="cpu")
    images, labels = load_split("mnist", "test")
    images, labels = images[: args.n], labels[: args.n]
    s_all = encode_all(bundle, images).cpu()
    links, gens = condition_links(bundle.cfg.k, args.seed, args.snr_db, args.t_star, [], {})
    rx = DiffusionReceiver(bundle, steps=1)
    direct, selfref = [], []
    for i in range(0, args.n, args.batch_size):
        v = send(s_all[i:i + args.batch_size], args.t_star, bundle.abar, links, gens).views[LEGIT]
        out = rx.decode_many(v.z, v.abar_eff, ["direct", "selfref"], ["matched"])
        direct.append(out[("matched", "direct")].labels)
        selfref.append(out[("matched", "selfref")].labels)
    d, s = torch.cat(direct), torch.cat(selfref)
    differ = d != s
    print(json.dumps({"n": args.n, "snr_db": args.snr_db, "t_star": args.t_star, "seed": args.seed,
                      "differ": int(differ.sum()), "direct_right_where_differ": int((d[differ] == labels[differ]).sum()),
                      "selfref_right_where_differ": int((s[differ] == labels[differ]).sum()),
                      "direct_acc": float((d == labels).float().mean()),
                      "selfref_acc": float((s == labels).float().mean())}))


if __name__ == "__main__":
    main()
