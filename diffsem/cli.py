"""The ``diffsem`` command: ``data fetch``, ``train``, ``eval``, ``attack list|train|eval``.

Every ``DiffSemError`` (bad config, missing data, mismatched checkpoint) is printed as one line and exits 2;
no traceback from deep inside torch reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, get_args

import torch

from diffsem.bundle import load_bundle
from diffsem.config import DECODE_MODES, OFDM_FIELDS, FadingName, LinkConfig, ModelConfig, PhyName, build, link_field_parser
from diffsem.data import DATASETS, default_data_dir, fetch, load_split
from diffsem.defaults import checkpoint_dir
from diffsem.errors import DiffSemError
from diffsem.phy import check_link
from diffsem.pipeline import DEEP_FADE_POLICIES
from diffsem.train import TrainConfig


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


def _add_phy_args(p: argparse.ArgumentParser) -> None:
    """The PHY of every link (diffsem.config.LinkConfig; docs/design.md §3): flat (the paper's) or ofdm."""
    g = p.add_argument_group("physical layer (every link; defaults: LinkConfig's)")
    g.add_argument("--phy", choices=list(get_args(PhyName)), default="flat")
    for name in OFDM_FIELDS:
        parse, choices = link_field_parser(name)
        field = LinkConfig.model_fields[name]
        g.add_argument("--" + name.replace("_", "-"), type=parse, choices=choices, default=None,
                       help=f"{field.description} (default {field.default})")
    g.add_argument("--deep-fade", default="mean", choices=list(DEEP_FADE_POLICIES),
                   help="listeners' policy for per-RE levels on ofdm links (docs/design.md §3)")


def _phy_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The LinkConfig PHY fields given on the command line ({} for the flat default)."""
    given = {name: getattr(args, name) for name in OFDM_FIELDS if getattr(args, name) is not None}
    if given and args.phy != "ofdm":
        raise DiffSemError(f"--{next(iter(given)).replace('_', '-')} needs --phy ofdm")
    settings = {"phy": args.phy, **given} if args.phy != "flat" else {}
    build(LinkConfig, **settings)  # one-line ConfigError on a bad value
    return settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffsem", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="data cache (default $DIFFSEM_DATA_DIR or ~/.cache/diffsem/data)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="data sets").add_subparsers(dest="action", required=True)
    f = data.add_parser("fetch", help="fetch and verify a data set")
    f.add_argument("name", choices=sorted(DATASETS))

    _add_train(sub)
    _add_eval(sub)
    _add_attack(sub)
    return p


def _add_train(sub: Any) -> None:
    """`diffsem train`."""
    t = sub.add_parser("train", help="train every part of a DiffSem system")
    t.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    t.add_argument("--out", type=Path, default=None, help="checkpoint folder (default checkpoints/<dataset>)")
    for name, f in TrainConfig.model_fields.items():  # the options are TrainConfig's described fields
        if f.description:
            default = "" if f.default is None else f" (default {f.default})"
            t.add_argument("--" + name.replace("_", "-"), type=float if f.annotation is float else int, default=None,
                           help=f.description + default)


def _add_eval(sub: Any) -> None:
    """`diffsem eval`: the sweep, the optional attack zoo, the PHY and the CSI aging sweep."""
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
    e.add_argument("--fading", choices=list(get_args(FadingName)), default="none")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--attacks", default="", help="also run the attack zoo: comma-separated names or 'all' "
                   "(results in OUT/attacks; needs `diffsem attack train` checkpoints)")
    e.add_argument("--attack-snrs", type=_floats, default=[20.0], help="legitimate SNRs (dB) of the attack evaluation")
    e.add_argument("--self-noise", default="random,keyed", help="attack evaluation: random and/or keyed self-noise")
    e.add_argument("--transmitter-checkpoint", type=Path, default=None,
                   help="enables whitebox-inversion in --attacks (it reads the transmitter's encoder)")
    e.add_argument("--whitebox-steps", type=int, default=100)
    _add_phy_args(e)
    e.add_argument("--aging-speeds", type=_floats, default=None, help="CSI aging sweep (ofdm): UE speeds km/h, e.g. 3,30,120")
    e.add_argument("--aging-delays", type=_ints, default=None, help="CSI aging sweep: feedback delays in frames, e.g. 1,4")
    e.add_argument("--aging-snrs", type=_floats, default=None, help="CSI aging sweep: legitimate SNRs dB (default 10)")


def _add_attack(sub: Any) -> None:
    """`diffsem attack list | train | train-judge | eval`."""
    att = sub.add_parser("attack", help="eavesdropper attacks: list, train, eval").add_subparsers(dest="action", required=True)
    att.add_parser("list", help="print the installed attacks (built-ins and plugins)")
    at = att.add_parser("train", help="train an attack on the attacker's auxiliary split")
    at.add_argument("--attack", required=True)
    at.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    at.add_argument("--checkpoints", type=Path, default=None, help="system checkpoint folder (default checkpoints/<dataset>)")
    at.add_argument("--out", type=Path, default=None,
                    help="folder whose attacks/ receives the checkpoint (default: the --checkpoints folder)")
    at.add_argument("--n-aux", type=int, default=6000, help="auxiliary images to train on")
    at.add_argument("--epochs", type=int, default=3)
    at.add_argument("--train-snr-db", type=float, default=None, help="train at one attacker SNR (default: a range)")
    at.add_argument("--seed", type=int, default=0)
    at.add_argument("--adapted-judge", choices=["yes", "no", "only"], default="yes",
                    help="also train the judge adapted to this attack's reconstructions (only: keep the attack's "
                         "weights, train the judge alone)")
    at.add_argument("--transmitter-checkpoint", type=Path, default=None,
                    help="for whitebox-inversion's adapted judge: the folder whose encoder it reads")
    at.add_argument("--whitebox-steps", type=int, default=100)
    tj = att.add_parser("train-judge", help="train a clean judge of the panel on the transmitter's split")
    tj.add_argument("--judge", required=True, help="resnet or mlp (cnn is the bundle's judge, trained by `diffsem train`)")
    tj.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    tj.add_argument("--checkpoints", type=Path, default=None, help="system checkpoint folder (default checkpoints/<dataset>)")
    tj.add_argument("--out", type=Path, default=None, help="folder whose judges/ receives it (default: --checkpoints)")
    tj.add_argument("--epochs", type=int, default=None, help="default: the judge's recipe")
    tj.add_argument("--max-train", type=int, default=None, help="cap on training images (quick runs)")
    ae = att.add_parser("eval", help="judged attacker accuracy, PSNR/SSIM and secrecy gap per t* and offset")
    ae.add_argument("--attacks", default="all", help="comma-separated names, or 'all' (whitebox needs --transmitter-checkpoint)")
    ae.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    ae.add_argument("--checkpoints", type=Path, default=None)
    ae.add_argument("--transmitter-checkpoint", type=Path, default=None, help="enables whitebox-inversion")
    ae.add_argument("--whitebox-steps", type=int, default=100)
    ae.add_argument("--n", type=int, default=1000)
    ae.add_argument("--snrs", type=_floats, default=[20.0], help="legitimate SNRs in dB, e.g. --snrs=-5,0,20")
    ae.add_argument("--t-stars", default="none,200,400,600", help="comma list; 'none' = no self-noise")
    ae.add_argument("--eve-offsets", type=_floats, default=[0.0, -5.0, -10.0],
                    help="eavesdropper SNR offsets in dB from the legitimate link; inf = a noiseless eavesdropper channel")
    ae.add_argument("--self-noise", default="random,keyed")
    ae.add_argument("--decode", default="direct", choices=list(DECODE_MODES))
    ae.add_argument("--fading", choices=list(get_args(FadingName)), default="none", help="fading of every link")
    ae.add_argument("--seed", type=int, default=0, help="seeds every noise draw; the same seed gives the same tables")
    ae.add_argument("--out", type=Path, default=Path("out/attacks"))
    ae.add_argument("--device", default="auto")
    _add_phy_args(ae)
    ae.add_argument("--judges", default=None,
                    help="comma-separated panel of judges (default: cnn and every judge under <checkpoints>/judges)")
    ae.add_argument("--no-adapted-judge", action="store_true",
                    help="leave each attack's adapted judge out of its panel")
    ae.add_argument("--gap-judge", default="max", help="the judged figure the secrecy gap uses: max (default) or a judge")
    ae.add_argument("--neighbours", action="store_true",
                    help="also the judge-free measures: k-NN in the robust judge's feature space and SSIM nearest "
                         "neighbours (needs <checkpoints>/judges/robust; SSIM costs about 0.1 s per reconstruction)")
    ae.add_argument("--pools", type=Path, default=None,
                    help="also write a judging pool per reconstruction row into this folder, for the panel's "
                         "'Judge it yourself' page (--judging-pools)")
    ae.add_argument("--pool-size", type=int, default=200, help="reconstructions kept per pool (the first ones)")


def _attack(args: argparse.Namespace) -> None:
    from diffsem.attacks import known_attacks

    if args.action == "list":
        print("\n".join(known_attacks()))
        return
    folder = args.checkpoints or checkpoint_dir(args.dataset)
    bundle = load_bundle(folder, device=getattr(args, "device", "cpu"))
    if bundle.cfg.dataset != args.dataset:
        raise DiffSemError(f"checkpoint is for data set {bundle.cfg.dataset!r} but --dataset {args.dataset!r} was given")
    if args.action == "train-judge":
        from diffsem.judges import judge_path, train_clean_judge

        metrics = train_clean_judge(bundle.cfg, args.judge, args.out or folder, args.data_dir, args.epochs,
                                    args.max_train)
        print(f"wrote {judge_path(args.out or folder, args.judge)} ({metrics})")
        return
    if args.action == "train":
        _train_attack(args, bundle, folder)
        return
    t_stars = [None if t.strip() == "none" else int(t) for t in args.t_stars.split(",") if t.strip()]
    images, labels = load_split(args.dataset, "test", args.data_dir)
    attacks = _attack_zoo(args, bundle, folder)
    _run_attacks(args, bundle, attacks, images[:args.n], labels[:args.n], t_stars, args.eve_offsets, args.snrs,
                 args.decode, args.out)


def _train_attack(args: argparse.Namespace, bundle: object, folder: Path) -> None:
    """`diffsem attack train`: the attack's weights (when it has any) and then, unless told otherwise, its adapted
    judge (when it returns reconstructions)."""
    from diffsem.attacks import attack_class, load_attack
    from diffsem.attacks.adapted import NoReconstructions, train_adapted_judge
    from diffsem.attacks.run import train_attack

    cls = attack_class(args.attack)
    out = args.out or folder
    options = {"train_snr_db": args.train_snr_db} if args.train_snr_db is not None else {}
    if cls.trainable and args.adapted_judge != "only":
        att, path, metrics = train_attack(bundle, args.attack, out, args.data_dir, args.n_aux, args.epochs, args.seed,
                                          **options)
        print(f"wrote {path} ({metrics})")
    else:
        if args.adapted_judge == "no":
            raise DiffSemError(f"attack {args.attack!r} has nothing to train but its adapted judge "
                               "(--adapted-judge yes or only)")
        extra = {"steps": args.whitebox_steps} if cls.needs_transmitter else {}
        att = load_attack(args.attack, bundle, checkpoint_root=out, transmitter_checkpoint=args.transmitter_checkpoint,
                          **extra)
    if args.adapted_judge != "no":
        try:
            path, metrics = train_adapted_judge(att, out, args.data_dir, args.n_aux, args.seed)
        except NoReconstructions:
            if cls.trainable and args.adapted_judge == "yes":
                print(f"no adapted judge: {args.attack!r} decides labels itself")
                return
            raise
        print(f"wrote {path} ({metrics})")


def _attack_zoo(args: argparse.Namespace, bundle: object, folder: Path) -> dict:
    """The attacks named by ``--attacks`` (``all``: the default zoo; those that read the transmitter's weights only
    with --transmitter-checkpoint), loaded with their checkpoints from ``folder/attacks``."""
    from diffsem.attacks import default_zoo
    from diffsem.attacks.run import load_attacks

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if args.attacks == "all":
        names = default_zoo(transmitter=args.transmitter_checkpoint is not None)
    return load_attacks(bundle, names, folder, args.transmitter_checkpoint, {"steps": args.whitebox_steps})


def _run_attacks(args: argparse.Namespace, bundle: object, attacks: dict, images: torch.Tensor, labels: torch.Tensor,
                 t_stars: list[int | None], offsets: list[float], snrs_db: list[float], decode: str, out: Path) -> None:
    """The attack evaluation shared by `diffsem attack eval` and `diffsem eval --attacks`."""
    from diffsem.attacks.run import evaluate_attacks, gap_table, write_attack_report
    from diffsem.judges import judge_list, load_panel
    from diffsem.pools import CHECKS

    folder = getattr(args, "checkpoints", None) or checkpoint_dir(args.dataset)
    panel = load_panel(bundle, folder, judge_list(getattr(args, "judges", None)), list(attacks),
                       adapted=not getattr(args, "no_adapted_judge", False))
    pools = getattr(args, "pools", None)
    test_images, test_labels = load_split(args.dataset, "test", args.data_dir)
    if pools is not None and len(images) > len(test_images) - CHECKS:
        raise DiffSemError(f"--pools keeps the last {CHECKS} test images for attention checks: use --n "
                           f"{len(test_images) - CHECKS} or fewer")
    neighbours = _neighbours(bundle, folder, args.data_dir) if getattr(args, "neighbours", False) else None
    res = evaluate_attacks(bundle, attacks, images, labels, t_stars, offsets, snrs_db,
                           tuple(m.strip() for m in args.self_noise.split(",")), seed=args.seed, decode=decode,
                           fading=args.fading, phy=_phy_settings(args), panel=panel,
                           gap_judge=getattr(args, "gap_judge", "max"), neighbours=neighbours, keep=pools is not None)
    if pools is not None:
        from diffsem.attacks.run import write_pools

        written = write_pools(res, pools, labels, test_images[-CHECKS:], test_labels[-CHECKS:],
                              getattr(args, "pool_size", None))
        print("wrote pools " + ", ".join(p.stem for p in written))
    paths = write_attack_report(res, out)
    print(gap_table(res["rows"]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _neighbours(bundle: Any, folder: Path, data_dir: Path | None) -> Any:
    """The judge-free measures over the reference set, in the committed robust judge's feature space."""
    from diffsem.judges import judge_path, load_judge
    from diffsem.neighbours import Neighbours, reference_set

    robust, _ = load_judge(judge_path(folder, "robust"), bundle.cfg)
    return Neighbours(robust, *reference_set(bundle.cfg.dataset, data_dir), classes=bundle.cfg.num_classes)


def _train(args: argparse.Namespace) -> None:
    from diffsem.train import train_all

    values = {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None}
    tc = build(TrainConfig, **values)
    build(ModelConfig, dataset=tc.dataset, k=tc.k)  # validate before loading data
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
    folder = args.checkpoints or checkpoint_dir(args.dataset)
    bundle = load_bundle(folder, expected=expected, device=args.device)
    if bundle.cfg.dataset != args.dataset:
        raise DiffSemError(f"checkpoint is for data set {bundle.cfg.dataset!r} but --dataset {args.dataset!r} was given")
    given = {"n": args.n, "snrs": args.snrs, "t_stars": args.t_stars, "default_t_star": args.default_t_star,
             "eve_offsets": args.eve_offsets, "steps": args.steps, "eta": args.eta, "fading": args.fading,
             "seed": args.seed, "modes": modes, "phy": _phy_settings(args), "deep_fade": args.deep_fade,
             "aging_speeds": args.aging_speeds, "aging_delays": args.aging_delays, "aging_snrs": args.aging_snrs}
    ec = build(EvalConfig, **{k: v for k, v in given.items() if v is not None})
    check_link(build(LinkConfig, **ec.phy), bundle.cfg.k)  # the grid must carry the bundle's frames
    attacks = _attack_zoo(args, bundle, folder) if args.attacks else {}  # fail fast, before the sweep
    images, labels = load_split(args.dataset, "test", args.data_dir)
    res = evaluate(bundle, ec, images[:ec.n], labels[:ec.n])
    paths = write_all(res, args.out)
    print(markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if attacks:
        _run_attacks(args, bundle, attacks, images[:ec.n], labels[:ec.n], [None, *ec.t_stars], list(ec.eve_offsets),
                     args.attack_snrs, "direct", args.out / "attacks")


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
        elif args.command == "attack":
            _attack(args)
    except DiffSemError as exc:
        print(f"diffsem: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
