"""The ``diffsem`` command: ``data fetch``, ``train``, ``eval``.

Every ``DiffSemError`` (bad config, missing data, mismatched checkpoint) is printed as one line and exits 2;
no traceback from deep inside torch reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from diffsem.bundle import checkpoint_dir, load_bundle
from diffsem.config import DECODE_MODES, ModelConfig, build
from diffsem.data import DATASETS, default_data_dir, fetch, load_split
from diffsem.errors import DiffSemError


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffsem", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="data cache (default $DIFFSEM_DATA_DIR or ~/.cache/diffsem/data)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    f = data.add_parser("fetch", help="fetch and verify a data set")
    f.add_argument("name", choices=sorted(DATASETS))

    t = sub.add_parser("train", help="train every part of a DiffSem system")
    t.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    t.add_argument("--out", type=Path, default=None, help="checkpoint folder (default checkpoints/<dataset>)")
    t.add_argument("--k", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs-encoder", type=int, default=None)
    t.add_argument("--epochs-channel-classifier", type=int, default=None)
    t.add_argument("--epochs-unet", type=int, default=None)
    t.add_argument("--epochs-judge", type=int, default=None)
    t.add_argument("--epochs-eavesdropper", type=int, default=None)
    t.add_argument("--max-train", type=int, default=None, help="cap on training images (quick runs)")

    e = sub.add_parser("eval", help="paper-style sweep over SNR and t*")
    e.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    e.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder (default checkpoints/<dataset>)")
    e.add_argument("--k", type=int, default=None, help="expected k; a checkpoint with another k is refused")
    e.add_argument("--n", type=int, default=2000, help="number of test images")
    e.add_argument("--out", type=Path, default=Path("out/eval"))
    e.add_argument("--snrs", type=_floats, default=None, help="legitimate SNRs in dB, e.g. -10,-5,0,5,10,15,20")
    e.add_argument("--t-stars", type=_ints, default=None, help="privacy levels t*, e.g. 100,200,300,400")
    e.add_argument("--default-t-star", type=int, default=None)
    e.add_argument("--eve-offsets", type=_floats, default=None, help="eavesdropper SNR offsets in dB, e.g. 0,-5,-10")
    e.add_argument("--modes", default=",".join(DECODE_MODES), help=f"decode modes from {DECODE_MODES}")
    e.add_argument("--steps", type=int, default=1, help="reverse steps (U-Net evaluations) per diffusion decode")
    e.add_argument("--eta", type=float, default=0.0, help="0 = DDIM, 1 = DDPM-like ancestral steps")
    e.add_argument("--fading", choices=["none", "rayleigh", "rician"], default="none")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    return p


def _train(args: argparse.Namespace) -> None:
    from diffsem.train import TrainConfig, train_all

    build(ModelConfig, dataset=args.dataset, k=args.k)  # validate before loading data
    overrides = {k: v for k, v in vars(args).items() if k.startswith("epochs_") and v is not None}
    tc = TrainConfig(dataset=args.dataset, k=args.k, seed=args.seed, max_train=args.max_train, **overrides)
    out = args.out or checkpoint_dir(args.dataset)
    train_all(tc, out, args.data_dir)
    print(f"wrote {out}")


def _eval(args: argparse.Namespace) -> None:
    from diffsem.evaluate import EvalConfig, evaluate
    from diffsem.report import markdown, write_all

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in DECODE_MODES]
    if bad or "direct" not in modes:
        raise DiffSemError(f"--modes {args.modes!r}: use a subset of {', '.join(DECODE_MODES)} that includes direct")
    expected = build(ModelConfig, dataset=args.dataset, k=args.k) if args.k is not None else None
    bundle = load_bundle(args.checkpoints or checkpoint_dir(args.dataset), expected=expected, device=args.device)
    if bundle.cfg.dataset != args.dataset:
        raise DiffSemError(f"checkpoint is for data set {bundle.cfg.dataset!r} but --dataset {args.dataset!r} was given")
    given = {"n": args.n, "snrs": args.snrs, "t_stars": args.t_stars, "default_t_star": args.default_t_star,
             "eve_offsets": args.eve_offsets, "steps": args.steps, "eta": args.eta, "fading": args.fading,
             "seed": args.seed, "modes": modes}
    ec = build(EvalConfig, **{k: v for k, v in given.items() if v is not None})
    images, labels = load_split(args.dataset, "test", args.data_dir)
    res = evaluate(bundle, ec, images[:ec.n], labels[:ec.n])
    paths = write_all(res, args.out)
    print(markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.command == "data":
            folder = fetch(args.name, args.data_dir or default_data_dir())
            print(f"{args.name}: verified in {folder}")
        elif args.command == "train":
            _train(args)
        elif args.command == "eval":
            _eval(args)
    except DiffSemError as exc:
        print(f"diffsem: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
