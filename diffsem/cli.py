"""The ``diffsem`` command: ``data fetch``, ``train``, ``eval``, ``attack list|train|eval``, ``antennas eval``.

Every ``DiffSemError`` (bad config, missing data, mismatched checkpoint) is printed as one line and exits 2;
no traceback from deep inside torch reaches the user.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, get_args

import torch

from diffsem.bundle import load_bundle
from diffsem.config import (
    DECODE_MODES,
    OFDM_FIELDS,
    FadingName,
    LinkConfig,
    ModelConfig,
    PhyName,
    build,
    link_field_parser,
    link_help,
)
from diffsem.data import DATASETS, default_data_dir, fetch, load_split
from diffsem.defaults import checkpoint_dir
from diffsem.errors import DiffSemError
from diffsem.phy import check_link
from diffsem.pipeline import DEEP_FADE_POLICIES
from diffsem.sweep import EXECUTORS
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
        g.add_argument("--" + name.replace("_", "-"), type=parse, choices=choices, default=None,
                       help=f"{link_help(name)} (default {LinkConfig.model_fields[name].default})")
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


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """Where the sweep's cells run (diffsem/sweep.py): here, or on Ray; finished cells are kept, so a rerun resumes."""
    g = p.add_argument_group("executor (the grid's cells; a rerun with the same --out resumes)")
    g.add_argument("--executor", choices=list(EXECUTORS), default="local",
                   help="local: one cell after another in this process; ray: cells as Ray tasks (pip install '.[cluster]')")
    g.add_argument("--ray-address", default=None,
                   help="a running Ray cluster's HOST:PORT (every worker must see the checkpoints and data at the same "
                        "paths); default: start a local Ray runtime of --workers CPUs")
    g.add_argument("--workers", type=int, default=None, help="local Ray runtime: CPUs, one cell each (default: all)")


def _sweep(args: argparse.Namespace, grid: Any, cells: Path | None) -> dict:
    """Run ``grid`` on the executor the options name, keeping finished cells in ``cells``; its results in order."""
    from diffsem.sweep import CellStore, make_executor, run_grid

    if args.workers is not None and args.workers < 1:
        raise DiffSemError(f"--workers {args.workers}: give at least 1")
    executor = make_executor(args.executor, args.ray_address, args.workers)
    try:
        return run_grid(grid, executor, CellStore(cells, grid) if cells is not None else None)
    finally:
        executor.close()


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
    _add_antennas(sub)
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
    _add_executor_args(e)


def _add_attack(sub: Any) -> None:
    """`diffsem attack list | train | train-judge | eval`."""
    att = sub.add_parser("attack", help="eavesdropper attacks: list, train, eval").add_subparsers(dest="action", required=True)
    att.add_parser("list", help="print the installed attacks (built-ins and plugins)")
    at = att.add_parser("train", help="train an attack on the attacker's auxiliary split")
    at.add_argument("--attack", required=True, help="an attack, or several comma-separated (one cell each)")
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
    _add_executor_args(at)
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
    _add_executor_args(ae)


def _add_antennas(sub: Any) -> None:
    """`diffsem antennas eval`: null-space self-noise from a multi-antenna transmitter against the attack zoo."""
    from diffsem.config import ARRAY_MODELS, CHANNEL_MODELS

    actions = sub.add_parser("antennas", help="multi-antenna links and null-space self-noise").add_subparsers(
        dest="action", required=True)
    rep = actions.add_parser("report", help="tables and plots of several `antennas eval` runs together")
    rep.add_argument("results", type=Path, nargs="+", help="antennas.json files")
    rep.add_argument("--out", type=Path, required=True)
    ae = actions.add_parser("eval", help="secrecy gap per antenna setting, CSI and eavesdropper")
    ae.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    ae.add_argument("--checkpoints", type=Path, default=None)
    ae.add_argument("--attacks", default="all", help="comma-separated names, or 'all' (whitebox needs --transmitter-checkpoint)")
    ae.add_argument("--transmitter-checkpoint", type=Path, default=None, help="enables whitebox-inversion")
    ae.add_argument("--whitebox-steps", type=int, default=100)
    ae.add_argument("--whitebox-n", type=int, default=200, help="images for attacks that read the transmitter's weights")
    ae.add_argument("--n", type=int, default=2000)
    ae.add_argument("--snrs", type=_floats, default=[20.0], help="legitimate SNRs in dB (Es/N0 per receive antenna)")
    ae.add_argument("--t-stars", default="none,300", help="comma list; 'none' = no beam self-noise")
    ae.add_argument("--self-noise", default="random", help="the beam's eps_self, comma list of random and keyed "
                    "(the legitimate receiver holds the evaluation key, as in `attack eval`)")
    ae.add_argument("--n-tx", type=_ints, default=[4], help="transmit antennas, from 1, 2, 4, 8")
    ae.add_argument("--beam-fractions", type=_floats, default=[0.01],
                    help="power fractions on the beam (the rest: null-space self-noise), e.g. 0.005,0.01,0.02")
    ae.add_argument("--csi", default="perfect:0", help="legitimate CSI as ESTIMATOR:DELAY items, e.g. perfect:0,ls:1")
    ae.add_argument("--speed-kmh", type=float, default=3.0, help="legitimate UE speed (CSI aging)")
    ae.add_argument("--carrier-ghz", type=float, default=3.5)
    ae.add_argument("--phy", choices=["flat", "ofdm"], default="flat",
                    help="flat: one channel matrix per frame; ofdm: one per resource element, precoded per RE")
    ae.add_argument("--channel-model", choices=list(dict.fromkeys([*ARRAY_MODELS, *CHANNEL_MODELS])), default=None,
                    help="flat: rayleigh (default) or CDL-A..E; ofdm: TDL-A (default)..TDL-E or CDL-A..E")
    ae.add_argument("--delay-spread-ns", type=float, default=100.0, help="ofdm: RMS delay spread (ns)")
    ae.add_argument("--eve-offsets", type=_floats, default=[0.0], help="eavesdropper SNR offsets in dB")
    ae.add_argument("--eve-rx", type=_ints, default=[1], help="eavesdropper receive antennas, e.g. 1,2,4,8")
    ae.add_argument("--eve-correlations", type=_floats, default=[0.0],
                    help="correlation of each eavesdropper antenna's channel with the legitimate one, in [0, 1]")
    ae.add_argument("--decode", default="direct", choices=list(DECODE_MODES))
    ae.add_argument("--seed", type=int, default=0)
    ae.add_argument("--out", type=Path, default=Path("out/antennas"))
    ae.add_argument("--device", default="auto")
    ae.add_argument("--judges", default=None, help="comma-separated panel of judges (default: cnn and every judge "
                    "under <checkpoints>/judges)")
    ae.add_argument("--no-adapted-judge", action="store_true", help="leave each attack's adapted judge out")
    ae.add_argument("--gap-judge", default="max", help="the judged figure the secrecy gap uses: max (default) or a judge")


def _antennas(args: argparse.Namespace) -> None:
    from diffsem.antenna_eval import AntennaEvalConfig, evaluate_antennas, gap_table, merge_results, write_antenna_report
    from diffsem.attacks.run import read_attack_results
    from diffsem.judges import judge_list, load_panel

    if args.action == "report":
        missing = [str(p) for p in args.results if not p.is_file()]
        if missing:
            raise DiffSemError(f"no such results file: {', '.join(missing)} (write one with `diffsem antennas eval`)")
        res = merge_results([read_attack_results(p) for p in args.results])
        paths = write_antenna_report(res, args.out)
        print(gap_table(res["rows"]))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        return

    grid = {"n": args.n, "snrs": args.snrs, "n_tx": args.n_tx, "beam_fractions": args.beam_fractions,
            "csi": [c.strip() for c in args.csi.split(",") if c.strip()], "speed_kmh": args.speed_kmh,
            "carrier_ghz": args.carrier_ghz, "phy": args.phy, "channel_model": args.channel_model,
            "delay_spread_ns": args.delay_spread_ns, "eve_offsets": args.eve_offsets,
            "eve_rx": args.eve_rx, "eve_correlations": args.eve_correlations, "seed": args.seed,
            "decode": args.decode, "whitebox_n": args.whitebox_n,
            "self_noise": [m.strip() for m in args.self_noise.split(",") if m.strip()],
            "t_stars": [None if t.strip() == "none" else int(t) for t in args.t_stars.split(",") if t.strip()]}
    cfg = build(AntennaEvalConfig, **grid)  # validates every condition's settings before anything loads
    folder = args.checkpoints or checkpoint_dir(args.dataset)
    bundle = load_bundle(folder, device=args.device)
    if bundle.cfg.dataset != args.dataset:
        raise DiffSemError(f"checkpoint is for data set {bundle.cfg.dataset!r} but --dataset {args.dataset!r} was given")
    attacks = _attack_zoo(args, bundle, folder)
    panel = load_panel(bundle, folder, judge_list(args.judges), list(attacks), adapted=not args.no_adapted_judge)
    images, labels = load_split(args.dataset, "test", args.data_dir)
    res = evaluate_antennas(bundle, attacks, images[:cfg.n], labels[:cfg.n], cfg, panel, args.gap_judge)
    paths = write_antenna_report(res, args.out)
    print(gap_table(res["rows"]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


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
        _train_attack(args, folder)
        return
    t_stars = [None if t.strip() == "none" else int(t) for t in args.t_stars.split(",") if t.strip()]
    attacks = _attack_zoo(args, bundle, folder)
    _run_attacks(args, attacks, args.n, t_stars, args.eve_offsets, args.snrs, args.decode, args.out)


def _train_attack(args: argparse.Namespace, folder: Path) -> None:
    """`diffsem attack train`: one cell per attack (diffsem.grids.AttackTrainGrid), each writing its checkpoint into
    OUT/attacks as it finishes. No cell store: the output is a checkpoint folder that gets copied around (an
    eavesdropper's files), and a rerun is asked to train again."""
    from diffsem.attacks import attack_class
    from diffsem.grids import AttackTrainGrid

    names = [a.strip() for a in args.attack.split(",") if a.strip()]
    for name in names:
        attack_class(name)  # an unknown name fails here, before any training
    out = args.out or folder
    grid = AttackTrainGrid(args.dataset, str(folder), tuple(names), str(out), args.n_aux, args.epochs, args.train_snr_db,
                           args.seed, args.adapted_judge, _str(args.transmitter_checkpoint), args.whitebox_steps,
                           _str(args.data_dir))
    for result in _sweep(args, grid, None).values():
        print("\n".join(result["lines"]))


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _attack_zoo(args: argparse.Namespace, bundle: object, folder: Path) -> dict:
    """The attacks named by ``--attacks`` (``all``: the default zoo; those that read the transmitter's weights only
    with --transmitter-checkpoint), loaded with their checkpoints from ``folder/attacks``."""
    from diffsem.attacks import default_zoo
    from diffsem.attacks.run import load_attacks

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if args.attacks == "all":
        names = default_zoo(transmitter=args.transmitter_checkpoint is not None)
    return load_attacks(bundle, names, folder, args.transmitter_checkpoint, {"steps": args.whitebox_steps})


def _run_attacks(args: argparse.Namespace, attacks: dict, n: int, t_stars: list[int | None],
                 offsets: list[float], snrs_db: list[float], decode: str, out: Path) -> None:
    """The attack evaluation shared by `diffsem attack eval` and `diffsem eval --attacks`, as a grid of cells
    (diffsem.grids.AttackEvalGrid) on the chosen executor; finished cells are kept in OUT/cells. With --pools, a
    judging pool per reconstruction row."""
    from diffsem.attacks.run import attack_cells, gap_table, write_attack_report
    from diffsem.grids import AttackEvalGrid
    from diffsem.judges import judge_list
    from diffsem.pools import CHECKS

    folder = getattr(args, "checkpoints", None) or checkpoint_dir(args.dataset)
    judges = judge_list(getattr(args, "judges", None))
    pools = getattr(args, "pools", None)
    test_images, test_labels = load_split(args.dataset, "test", args.data_dir)
    if pools is not None and getattr(args, "pool_size", 0) < 1:
        raise DiffSemError(f"--pool-size {args.pool_size}: a pool keeps at least 1 reconstruction")
    if pools is not None and n > len(test_images) - CHECKS:
        raise DiffSemError(f"--pools keeps the last {CHECKS} test images for attention checks: use --n "
                           f"{len(test_images) - CHECKS} or fewer")
    grid = AttackEvalGrid(args.dataset, str(folder), tuple(attacks), tuple(snrs_db),
                          tuple(m.strip() for m in args.self_noise.split(",")), tuple(t_stars), tuple(offsets), n,
                          _str(args.transmitter_checkpoint), args.whitebox_steps,
                          None if judges is None else tuple(judges), not getattr(args, "no_adapted_judge", False),
                          args.seed, decode, args.fading, _phy_settings(args), getattr(args, "gap_judge", "max"),
                          getattr(args, "device", "auto"), _str(args.data_dir),
                          neighbours=getattr(args, "neighbours", False),
                          keep=getattr(args, "pool_size", 0) if pools is not None else 0)
    attack_cells(*grid.axis_values())  # bad axis values fail before anything loads ...
    grid.context()  # ... and a bad judge or attack checkpoint as one line, before any cell (reused by local cells)
    started = time.time()
    res = grid.assemble(_sweep(args, grid, out / "cells"), time.time() - started)
    if pools is not None:
        from diffsem.attacks.run import write_pools

        written = write_pools(res, pools, test_labels[:n], test_images[-CHECKS:], test_labels[-CHECKS:])
        print("wrote pools " + ", ".join(p.stem for p in written))
    paths = write_attack_report(res, out)
    print(gap_table(res["rows"]))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def _train(args: argparse.Namespace) -> None:
    from diffsem.train import train_all

    values = {k: v for k, v in vars(args).items() if k in TrainConfig.model_fields and v is not None}
    tc = build(TrainConfig, **values)
    build(ModelConfig, dataset=tc.dataset, k=tc.k)  # validate before loading data
    out = args.out or checkpoint_dir(args.dataset)
    train_all(tc, out, args.data_dir)
    print(f"wrote {out}")


def _eval(args: argparse.Namespace) -> None:
    from diffsem.evaluate import EvalConfig, check_t_stars
    from diffsem.grids import EvalGrid
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
    check_t_stars(bundle, ec)
    attacks = _attack_zoo(args, bundle, folder) if args.attacks else {}  # fail fast, before the sweep
    load_split(args.dataset, "test", args.data_dir)  # a missing data set fails here, before any worker starts
    grid = EvalGrid(args.dataset, str(folder), ec.model_dump(), args.device, _str(args.data_dir), args.k)
    started = time.time()
    res = grid.assemble(_sweep(args, grid, args.out / "cells"), time.time() - started)
    paths = write_all(res, args.out)
    print(markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if attacks:
        _run_attacks(args, attacks, ec.n, [None, *ec.t_stars], list(ec.eve_offsets), args.attack_snrs, "direct",
                     args.out / "attacks")


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
        elif args.command == "antennas":
            _antennas(args)
    except DiffSemError as exc:
        print(f"diffsem: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
