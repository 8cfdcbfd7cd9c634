"""``python -m launcher``: start the whole live stack on loopback, print its URLs, stop it on Ctrl-C/SIGTERM.

Example (the demo)::

    python -m launcher --checkpoints checkpoints/mnist \\
        --eavesdropper eve:feature-classifier:0 --eavesdropper far-eve:feature-classifier:-10

An attack that reads the transmitter's weights (``whitebox-inversion``) runs only when its eavesdropper is named in
``--eavesdropper-reads-transmitter-weights``, which hands it the transmitter's checkpoint::

    python -m launcher -e wb:whitebox-inversion:0 --eavesdropper-reads-transmitter-weights wb

``--ports 0`` makes every port ephemeral (several stacks side by side, tests); ``--state-file`` writes the
URLs, pids and ports as JSON once everything is healthy.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from diffsem.bundle import checkpoint_dir
from diffsem.config import CLASSIFIERS, DECODE_MODES
from launcher.stack import EveSpec, Stack, StackConfig, StartupError


def _eve(text: str) -> EveSpec:
    try:
        return EveSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m launcher", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"), help="checkpoint bundle folder")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, ...")
    p.add_argument("--eavesdropper", "-e", type=_eve, action="append", default=[], metavar="NAME[:ATTACK[:OFFSET_DB]]",
                   help="an eavesdropper (repeatable); OFFSET_DB: its SNR relative to the legitimate link")
    p.add_argument("--eavesdropper-reads-transmitter-weights", action="append", default=[], metavar="NAME",
                   help="give eavesdropper NAME the transmitter's checkpoint (white-box attacks; repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--ports", choices=["fixed", "0"], default="fixed",
                   help="fixed: the ports below; 0: every port ephemeral")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--transmitter-port", type=int, default=50051)
    p.add_argument("--emulator-port", type=int, default=50052)
    p.add_argument("--receiver-port", type=int, default=50053)
    p.add_argument("--telemetry-port", type=int, default=50060)
    p.add_argument("--eve-base-port", type=int, default=50070, help="first eavesdropper port (+1 each)")
    p.add_argument("--mode", choices=DECODE_MODES, default="selfref", help="receiver decode mode")
    p.add_argument("--classifier", choices=CLASSIFIERS, default="matched", help="receiver classifier")
    p.add_argument("--steps", type=int, default=1, help="receiver reverse steps")
    p.add_argument("--snr-db", type=float, default=10.0, help="legitimate link SNR (dB)")
    phy = p.add_argument_group("physical layer", "of the legitimate link and of new eavesdropper links (each draws "
                               "its own channel); change it live with PUT /api/channel")
    phy.add_argument("--phy", choices=["flat", "ofdm"], default="flat")
    phy.add_argument("--channel-model", default=None, help="ofdm: TDL-A..E or CDL-A..E (default TDL-A)")
    phy.add_argument("--delay-spread-ns", type=float, default=None, help="ofdm: RMS delay spread (default 100)")
    phy.add_argument("--speed-kmh", type=float, default=None, help="ofdm: UE speed, sets the Doppler (default 3)")
    phy.add_argument("--estimator", choices=["ls", "perfect"], default=None, help="ofdm: CSI from pilots or perfect")
    phy.add_argument("--feedback", choices=["re", "subband", "frame"], default=None, help="ofdm: CSI feedback unit")
    phy.add_argument("--feedback-delay", type=int, default=None, help="ofdm: feedback delay in frames (default 1)")
    p.add_argument("--t-star", type=int, default=300, help="privacy level t*")
    p.add_argument("--no-self-noise", action="store_true")
    p.add_argument("--self-noise", choices=["random", "keyed"], default="random",
                   help="keyed: eps_self from a secret only the transmitter and receiver get (see --key-file)")
    p.add_argument("--key-file", type=Path, default=None,
                   help="keyed self-noise secret; default $DIFFSEM_SELF_NOISE_KEY (hex), else a fresh random key")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--receiver-threads", type=int, default=None)
    p.add_argument("--log-dir", type=Path, default=None, help="service logs (default: a new temp folder)")
    p.add_argument("--state-file", type=Path, default=None, help="write URLs, pids and ports here as JSON")
    p.add_argument("--no-restart", action="store_true", help="do not restart services that die")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> StackConfig:
    ports = dict(http_port=args.http_port, transmitter_port=args.transmitter_port, emulator_port=args.emulator_port,
                 receiver_port=args.receiver_port, telemetry_port=args.telemetry_port, eve_base_port=args.eve_base_port)
    if args.ports == "0":
        ports = {k: 0 for k in ports}
    return StackConfig(checkpoints=args.checkpoints, device=args.device, host=args.host,
                       eavesdroppers=args.eavesdropper, mode=args.mode, classifier=args.classifier, steps=args.steps,
                       snr_db=args.snr_db, phy=phy_options(args),
                       t_star=None if args.no_self_noise else args.t_star, self_noise=args.self_noise,
                       key_file=args.key_file, seed=args.seed, max_batch=args.max_batch,
                       max_wait_ms=args.max_wait_ms, receiver_threads=args.receiver_threads, log_dir=args.log_dir,
                       reads_transmitter_weights=tuple(args.eavesdropper_reads_transmitter_weights),
                       restart=not args.no_restart, **ports)


PHY_OPTIONS = ("phy", "channel_model", "delay_spread_ns", "speed_kmh", "estimator", "feedback", "feedback_delay")


def phy_options(args: argparse.Namespace) -> dict[str, object]:
    """The PHY options given on the command line, for the emulator's argv (the emulator validates them)."""
    return {name: getattr(args, name) for name in PHY_OPTIONS if getattr(args, name) is not None}


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
