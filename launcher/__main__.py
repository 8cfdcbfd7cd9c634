"""``python -m launcher``: start the whole live stack on loopback, print its URLs, stop it on Ctrl-C/SIGTERM.

Example (the demo)::

    python -m launcher --checkpoints checkpoints/mnist \\
        --eavesdropper eve:feature-classifier:0 --eavesdropper far-eve:feature-classifier:-10

An attack that reads the transmitter's weights (``whitebox-inversion``) runs only when its eavesdropper is named in
``--eavesdropper-reads-transmitter-weights``, which hands it the transmitter's checkpoint::

    python -m launcher -e wb:whitebox-inversion:0 --eavesdropper-reads-transmitter-weights wb

``--scenario equal-snr|snr-advantage|keyed|antennas`` (default $DIFFSEM_SCENARIO) starts a preset that shows where
privacy comes from (services_common/scenarios.py); flags given with it win::

    python -m launcher --scenario antennas

``--ports 0`` makes every port ephemeral (several stacks side by side, tests); ``--state-file`` writes the
URLs, pids and ports as JSON once everything is healthy.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path
from typing import get_args, get_type_hints

from diffsem.config import PHY_FIELDS
from launcher.scenarios import ENV as SCENARIO_ENV
from launcher.scenarios import SCENARIOS, expand
from launcher.specs import EMULATOR
from launcher.stack import PORTS, EveSpec, Stack, StackConfig, StartupError


def _eve(text: str) -> EveSpec:
    try:
        return EveSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """Every :class:`StackConfig` field made with ``launcher.stack.option``, as ``--field-name`` of its type."""
    hints = get_type_hints(StackConfig)
    for f in fields(StackConfig):
        if "help" in f.metadata:
            kind = next(t for t in get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
            extra = dict(f.metadata)
            if f.default is not None:
                extra["help"] += f" (default {f.default})"
            p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default, **extra)


def add_phy_options(p: argparse.ArgumentParser) -> None:
    """The emulator's PHY options (channel_emulator/settings.py) for the legitimate link and new eavesdropper links;
    unset ones keep the emulator's defaults."""
    g = p.add_argument_group("physical layer", "of the legitimate link and of new eavesdropper links (each draws its "
                             "own channel); change it live with PUT /api/links")
    for name in PHY_FIELDS:
        o = EMULATOR.option(name)
        g.add_argument(o.flag, type=o.type, choices=o.choices, default=None, help=f"{o.help} (default {o.default})")


def phy_options(args: argparse.Namespace) -> dict[str, object]:
    """The PHY options given on the command line, by the emulator's (= LinkConfig's) names; {}: flat."""
    return {name: getattr(args, name) for name in PHY_FIELDS if getattr(args, name) is not None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launcher", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_stack_options(p)
    p.add_argument("--eavesdropper", "-e", type=_eve, action="append", default=[],
                   metavar="NAME[:ATTACK[:OFFSET_DB[:N_RX]]]",
                   help="an eavesdropper (repeatable); OFFSET_DB: its SNR relative to the legitimate link; N_RX: its "
                        "receive antennas (with --n-tx > 1)")
    p.add_argument("--null-space", action="store_true",
                   help="self-noise in the null space of the legitimate channel (needs --n-tx 2, 4 or 8)")
    p.add_argument("--eavesdropper-reads-transmitter-weights", action="append", default=[], metavar="NAME",
                   help="give eavesdropper NAME the transmitter's checkpoint (white-box attacks; repeatable)")
    p.add_argument("--ports", choices=["fixed", "0"], default="fixed",
                   help="fixed: the --*-port options; 0: every port ephemeral")
    p.add_argument("--no-self-noise", action="store_true", help="plain frames (a = 1), whatever --t-star says")
    p.add_argument("--state-file", type=Path, default=None, help="write URLs, pids and ports here as JSON")
    p.add_argument("--no-restart", action="store_true", help="do not restart services that die")
    p.add_argument("--scenario", choices=list(SCENARIOS), default=None,
                   help=f"a preset that shows where privacy comes from (services_common/scenarios.py; ${SCENARIO_ENV})")
    add_phy_options(p)
    try:
        argv = expand(sys.argv[1:] if argv is None else argv, os.environ.get(SCENARIO_ENV))
    except ValueError as exc:
        p.error(str(exc))
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> StackConfig:
    values = {f.name: getattr(args, f.name) for f in fields(StackConfig) if "help" in f.metadata}
    if args.ports == "0":
        values |= {name: 0 for name in PORTS}
    if args.no_self_noise:
        values["t_star"] = None
    return StackConfig(**values, eavesdroppers=args.eavesdropper, phy=phy_options(args), restart=not args.no_restart,
                       null_space=args.null_space,
                       reads_transmitter_weights=tuple(args.eavesdropper_reads_transmitter_weights))


def reads_transmitter_weights(attack: str) -> bool:
    """Whether an attack declares that it needs the transmitter's weights (``Attack.needs_transmitter``)."""
    from diffsem.attacks.base import attack_class
    from diffsem.errors import ConfigError

    try:
        return attack_class(attack).needs_transmitter
    except ConfigError:  # a broken plugin: its eavesdropper reports the error when it starts
        return False


def check_eavesdroppers(args: argparse.Namespace) -> str | None:
    """A one-line problem with the eavesdroppers asked for, or None."""
    from eavesdropper.attacks import known_attacks

    names = [e.name for e in args.eavesdropper]
    unknown = sorted({e.attack for e in args.eavesdropper} - set(known_attacks()))
    if unknown:
        return f"unknown attack {', '.join(map(repr, unknown))}; known attacks: {', '.join(known_attacks())}"
    if len(set(names)) != len(names) or {"receiver", "transmitter", "channel_emulator", "control_panel",
                                          "control"} & set(names):
        return "eavesdropper names must be unique and differ from the service names"
    strays = sorted(set(args.eavesdropper_reads_transmitter_weights) - set(names))
    if strays:
        return f"--eavesdropper-reads-transmitter-weights names no eavesdropper: {', '.join(strays)}"
    for e in args.eavesdropper:
        if reads_transmitter_weights(e.attack) and e.name not in args.eavesdropper_reads_transmitter_weights:
            return (f"attack {e.attack!r} of {e.name!r} reads the transmitter's weights; allow it explicitly with "
                    f"--eavesdropper-reads-transmitter-weights {e.name}")
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_eavesdroppers(args)
    if problem:
        print(f"launcher: {problem}", file=sys.stderr)
        return 2
    if not (args.checkpoints / "bundle.json").exists():
        print(f"launcher: no checkpoint bundle in {args.checkpoints} (bundle.json missing); train one with "
              f"`diffsem train --out {args.checkpoints}` or pass --checkpoints", file=sys.stderr)
        return 2
    stop = threading.Event()
    started = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if not started.is_set():
            raise KeyboardInterrupt  # interrupts startup; Stack.start stops what it started

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    stack = Stack(config_from(args))
    print(f"[launcher] starting; service logs in {stack.cfg.log_dir}", flush=True)
    try:
        stack.start()
    except StartupError as exc:
        print(f"[launcher] startup failed: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("[launcher] interrupted during startup; everything stopped", file=sys.stderr, flush=True)
        return 130
    started.set()
    print("[launcher] every service is healthy:", flush=True)
    for name, url in stack.urls().items():
        print(f"  {name:<22} {url}", flush=True)
    if args.state_file:
        tmp = args.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(stack.state(), indent=1))
        tmp.replace(args.state_file)
    print("[launcher] Ctrl-C or SIGTERM stops everything", flush=True)
    while not stop.wait(1.0):
        if args.state_file:
            tmp = args.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(stack.state(), indent=1))
            tmp.replace(args.state_file)
    print("[launcher] stopping", flush=True)
    stack.stop()
    print("[launcher] stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
