"""Start, supervise and stop the live stack as local processes.

Start order follows the dependencies: channel emulator, transmitter, control panel (Telemetry), receiver,
eavesdroppers. Command lines come from each service's settings spec (``<service>/settings.py``).

Credentials (docs/design.md §8): the stack writes an authority key and one credential per service into
``<log dir>/auth`` and gives each service only its own credential file. The verifying services (emulator,
transmitter, receiver, the panel's telemetry) get the key; an eavesdropper gets only ``control.pins``, the control
credential's fingerprint, so it can check its callers but never mint or read another role's credential. Settings
environment variables of the caller (``$DIFFSEM_<OPTION>``, the self-noise key, the auth files) are not passed on:
each service gets exactly its command line.

Each service binds its port (0 = ephemeral) and writes it to a port file; the stack then waits for the gRPC
health service to say SERVING (``/healthz`` for the panel). A service that dies is restarted on the same port
(``restart=True``), so the others reconnect to the same address: a receiver killed mid-run reattaches to the
emulator and the run completes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diffsem.config import CLASSIFIERS, DECODE_MODES, LinkConfig
from diffsem.defaults import KEY_ENV, checkpoint_dir
from launcher.specs import EAVESDROPPER, EMULATOR, PANEL, RECEIVER, TRANSMITTER
from services_common import auth
from services_common.client import health_status
from services_common.spec import DEFAULT_PORTS, ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EveSpec:
    """One eavesdropper: ``name[:attack[:snr_offset_db]]`` (offset relative to the legitimate link, dB)."""

    name: str
    attack: str = "feature-classifier"
    snr_offset_db: float | None = None

    @classmethod
    def parse(cls, text: str) -> EveSpec:
        parts = text.split(":")
        if not parts[0] or len(parts) > 3:
            raise ValueError(f"eavesdropper {text!r}: use NAME[:ATTACK[:SNR_OFFSET_DB]], e.g. eve:feature-classifier:-3")
        offset = None
        if len(parts) == 3 and parts[2]:
            try:
                offset = float(parts[2])
            except ValueError:
                raise ValueError(f"eavesdropper {text!r}: SNR offset {parts[2]!r} is not a number") from None
        return cls(parts[0], parts[1] if len(parts) > 1 and parts[1] else "feature-classifier", offset)


def option(default: Any, help: str, **argparse: Any) -> Any:
    """A :class:`StackConfig` field that ``python -m launcher`` also takes, as ``--<field-name>`` with ``-`` for ``_``;
    its type is the field's annotation (launcher/__main__.py builds the options from these fields)."""
    return field(default=default, metadata={"help": help, **argparse})


@dataclass
class StackConfig:
    """Options of the whole stack. Ports: 0 = ephemeral. Fields made with :func:`option` are the launcher's options."""

    checkpoints: Path = option(checkpoint_dir("mnist"), "checkpoint bundle folder")
    device: str = option("auto", "auto (CUDA when present), cpu, cuda, ...")
    host: str = option("127.0.0.1", "the address every service binds")
    http_port: int = option(DEFAULT_PORTS["http"], "the control panel's HTTP port")
    transmitter_port: int = option(DEFAULT_PORTS["transmitter"], "the transmitter's gRPC port")
    emulator_port: int = option(DEFAULT_PORTS["channel_emulator"], "the channel emulator's gRPC port")
    receiver_port: int = option(DEFAULT_PORTS["receiver"], "the receiver's gRPC port")
    telemetry_port: int = option(DEFAULT_PORTS["telemetry"], "the control panel's telemetry gRPC port")
    eve_base_port: int = option(DEFAULT_PORTS["eavesdroppers_from"], "first eavesdropper port (+1 each)")
    eavesdroppers: list[EveSpec] = field(default_factory=list)
    mode: str = option("selfref", "receiver decode mode", choices=DECODE_MODES)
    classifier: str = option("matched", "receiver classifier", choices=CLASSIFIERS)
    steps: int = option(1, "receiver reverse steps")
    snr_db: float = option(LinkConfig.model_fields["snr_db"].default, "legitimate link SNR (dB)")
    # the PHY of the legitimate link and of new eavesdropper links, by LinkConfig's names (diffsem.config.PHY_FIELDS,
    # the emulator's options); empty: the emulator's defaults (flat)
    phy: dict[str, Any] = field(default_factory=dict)
    t_star: int | None = option(300, "privacy level t* (None: no self-noise, see --no-self-noise)")
    self_noise: str = option("random", "keyed: eps_self from a secret only the transmitter and receiver get (see "
                             "--key-file)", choices=("random", "keyed"))
    key_file: Path | None = option(None, "keyed self-noise secret; default $DIFFSEM_SELF_NOISE_KEY (hex), else a "
                                   "fresh random key")
    seed: int = option(0, "seed of the channel draws and of random self-noise")
    max_batch: int = option(64, "receiver dynamic batching: most frames per decode")
    max_wait_ms: float = option(5.0, "receiver dynamic batching: longest wait for more frames")
    queue_size: int = LinkConfig.model_fields["queue_size"].default
    receiver_threads: int | None = option(None, "receiver torch CPU threads (default: torch's choice)")
    reads_transmitter_weights: tuple[str, ...] = ()  # eavesdropper names given the transmitter's checkpoint
    panel_args: tuple[str, ...] = ()  # more `python -m control_panel` options, e.g. its limits (benchmarks/load.py)
    log_dir: Path | None = option(None, "service logs (default: a new temp folder)")
    restart: bool = True
    startup_timeout_s: float = 180.0

    @classmethod
    def ephemeral(cls, **kw: Any) -> StackConfig:
        """Every port ephemeral (tests, several stacks side by side)."""
        return cls(**({name: 0 for name in PORTS} | kw))


PORTS = tuple(f.name for f in fields(StackConfig) if f.name.endswith("_port"))


def bundle_k(checkpoints: Path) -> int | None:
    """The frame size k of a checkpoint bundle (for the emulator's ofdm grid check); None if it is unreadable (the
    services that load it say why)."""
    try:
        return int(json.loads((checkpoints / "bundle.json").read_text())["config"]["k"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Service:
    """One child process: its command line, port file, log file and restart count. Only a service started with
    ``key_env`` (transmitter and receiver) sees a keyed self-noise secret in its environment."""

    def __init__(self, name: str, module: str, args: list[str], log_dir: Path, health: str,
                 key_env: dict[str, str] | None = None, extra_env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()):
        self.name, self.module, self.args, self.health = name, module, args, health
        self.prefix = prefix  # runs the command inside it, e.g. ("ip", "netns", "exec", "host1"): another host
        self.key_env = key_env
        self.extra_env = extra_env or {}
        self.port_file = log_dir / f"{name}.port.json"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.restarts = 0
        self.wanted = True

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _WITHHELD}
        env.update(self.key_env or {})
        env.update(self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("DIFFSEM_METRICS_PORT", "0")  # each gRPC service's Prometheus endpoint, ephemeral
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", self.module, *self.args, "--port-file",
                                      str(self.port_file)],
                                     cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_ports(self) -> bool:
        try:
            data = json.loads(self.port_file.read_text())
        except (OSError, ValueError):
            return False
        if self.proc is None or data.get("pid") != self.proc.pid:
            return False
        self.ports = {k: v for k, v in data.items() if k != "pid"}
        return True

    def address(self, key: str = "grpc", host: str = "127.0.0.1") -> str:
        return f"{host}:{self.ports[key]}"

    def healthy(self, host: str) -> bool:
        if not self.alive or not self.read_ports():
            return False
        if self.health == "http":
            try:
                with urllib.request.urlopen(f"http://{host}:{self.ports['http']}/healthz", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False
        return health_status(self.address(host=host)) == "SERVING"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def fix_port(self) -> None:
        """After the first start, restart on the same port(s) so clients keep their addresses."""
        if not self.ports:
            return
        for flag, key in (("--port", "grpc"), ("--http-port", "http"), ("--telemetry-port", "telemetry")):
            if flag in self.args and key in self.ports:
                self.args[self.args.index(flag) + 1] = str(self.ports[key])

    def stop(self, timeout: float = 10.0) -> None:
        self.terminate()
        self.reap(timeout)

    def terminate(self) -> None:
        """SIGTERM: the service shuts down gracefully (it is not restarted)."""
        self.wanted = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self, timeout: float = 10.0) -> None:
        """Wait up to ``timeout`` for a terminated service to exit, then SIGKILL it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _withheld() -> frozenset[str]:
    """Environment variables no child inherits from the launcher: every service option's, the secrets', the DB's."""
    names = {o.env for spec in (EMULATOR, TRANSMITTER, RECEIVER, EAVESDROPPER) for o in spec.options}
    return frozenset(names | {KEY_ENV, auth.CREDENTIAL_ENV, auth.KEY_ENV, auth.PINS_ENV, f"{ENV_PREFIX}DB"})


_WITHHELD = _withheld()


class StartupError(RuntimeError):
    pass


class Stack:
    """The running stack. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        if cfg.log_dir is None:
            import tempfile

            cfg.log_dir = Path(tempfile.mkdtemp(prefix="diffsem-stack-"))
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self.auth_dir = cfg.log_dir / "auth"
        auth.init_dir(self.auth_dir, [e.name for e in cfg.eavesdroppers])
        self.services: dict[str, Service] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._eve_port = cfg.eve_base_port

    # ---- addresses -------------------------------------------------------------------------------------
    def address(self, name: str, key: str = "grpc") -> str:
        return self.services[name].address(key, self.cfg.host)

    @property
    def http_url(self) -> str:
        return f"http://{self.cfg.host}:{self.services['control_panel'].ports['http']}"

    def urls(self) -> dict[str, str]:
        out = {"dashboard": self.http_url + "/", "api docs": self.http_url + "/docs",
               "metrics": self.http_url + "/metrics",
               "telemetry (gRPC)": self.address("control_panel", "telemetry")}
        out |= {f"{name} (gRPC)": self.address(name) for name, s in self.services.items() if name != "control_panel"}
        out |= {f"{name} metrics": f"http://{self.cfg.host}:{s.ports['metrics']}/metrics"
                for name, s in self.services.items() if "metrics" in s.ports}
        return out

    # ---- lifecycle -------------------------------------------------------------------------------------
    def _add(self, name: str, module: str, args: list[str], health: str = "grpc",
             key_env: dict[str, str] | None = None, extra_env: dict[str, str] | None = None) -> Service:
        svc = Service(name, module, args, self.cfg.log_dir, health, key_env, extra_env)  # type: ignore[arg-type]
        self.services[name] = svc
        svc.start()
        return svc

    def _wait(self, svc: Service, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.cfg.startup_timeout_s)
        while time.monotonic() < deadline:
            if svc.healthy(self.cfg.host):
                svc.fix_port()
                return
            if not svc.alive:
                raise StartupError(f"{svc.name} exited with status {svc.proc.returncode if svc.proc else '?'} "
                                   f"during startup; its log ({svc.log_path}) ends:\n{svc.log_tail()}")
            time.sleep(0.2)
        raise StartupError(f"{svc.name} not healthy after {timeout or self.cfg.startup_timeout_s:.0f} s; "
                           f"its log ({svc.log_path}) ends:\n{svc.log_tail()}")

    def _wait_ports(self, svc: Service) -> None:
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while not svc.read_ports():
            if not svc.alive or time.monotonic() > deadline:
                raise StartupError(f"{svc.name} did not bind its port; its log ({svc.log_path}) ends:\n"
                                   f"{svc.log_tail()}")
            time.sleep(0.1)

    def _auth(self, credential: str, verify: str = "key") -> dict[str, Path]:
        """Spec values for a service's own credential and how it verifies callers (``key`` or ``pins``)."""
        out = {"credential_file": self.auth_dir / f"{credential}.credential"}
        if verify == "key":
            out["auth_key_file"] = self.auth_dir / "authority.key"
        else:
            out["auth_pins_file"] = self.auth_dir / auth.PINS_FILE
        return out

    def _key(self) -> tuple[Path | None, dict[str, str] | None]:
        """Keyed self-noise: the key file, or the environment, that only the transmitter and receiver get."""
        if self.cfg.self_noise != "keyed":
            return None, None
        if self.cfg.key_file is not None:
            return self.cfg.key_file, None
        return None, {KEY_ENV: os.environ.get(KEY_ENV) or secrets.token_hex(32)}

    def start(self) -> Stack:
        c = self.cfg
        try:
            emu = self._add("channel_emulator", "channel_emulator", EMULATOR.argv(
                host=c.host, port=c.emulator_port, snr_db=c.snr_db, seed=c.seed, queue_size=c.queue_size,
                auth_key_file=self.auth_dir / "authority.key", k=bundle_k(c.checkpoints), **c.phy))
            self._wait_ports(emu)  # the transmitter needs only its address; it is waited for below with the rest
            model = dict(checkpoints=c.checkpoints, device=c.device)
            key_file, key_env = self._key()
            tx = self._add("transmitter", "transmitter", TRANSMITTER.argv(
                host=c.host, port=c.transmitter_port, emulator=self.address("channel_emulator"), seed=c.seed,
                no_self_noise=c.t_star is None, t_star=c.t_star,
                self_noise="keyed" if key_env is not None or key_file else None, key_file=key_file,
                **model, **self._auth(auth.TRANSMITTER)), key_env=key_env)
            self._wait_ports(tx)  # its address is known before its model is loaded
            panel = self._add("control_panel", "control_panel", [*PANEL.argv(
                host=c.host, http_port=c.http_port, telemetry_port=c.telemetry_port,
                transmitter=self.address("transmitter"), emulator=self.address("channel_emulator"),
                credential_file=self.auth_dir / f"{auth.CONTROL}.credential",
                auth_key_file=self.auth_dir / "authority.key"), *c.panel_args],
                health="http", extra_env={f"{ENV_PREFIX}DB": os.environ.get(f"{ENV_PREFIX}DB") or str(c.log_dir / "panel.db")})
            self._wait(panel)
            rx = self._add("receiver", "receiver", RECEIVER.argv(
                host=c.host, port=c.receiver_port, emulator=self.address("channel_emulator"),
                telemetry=self.address("control_panel", "telemetry"), mode=c.mode, classifier=c.classifier,
                steps=c.steps, max_batch=c.max_batch, max_wait_ms=c.max_wait_ms, threads=c.receiver_threads,
                key_file=key_file, **model, **self._auth(auth.RECEIVER)), key_env=key_env)
            eves = [self._start_eve(spec) for spec in c.eavesdroppers]
            for svc in (emu, tx, rx, *eves):
                self._wait(svc)
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _start_eve(self, spec: EveSpec) -> Service:
        if spec.name in self.services:
            raise StartupError(f"a service named {spec.name!r} already runs")
        port = self._eve_port
        if self._eve_port:
            self._eve_port += 1
        auth.init_dir(self.auth_dir, [spec.name])  # the same key: every issued credential stays valid
        reads = spec.name in self.cfg.reads_transmitter_weights
        args = EAVESDROPPER.argv(
            host=self.cfg.host, port=port, name=spec.name, attack=spec.attack,
            emulator=self.address("channel_emulator"), telemetry=self.address("control_panel", "telemetry"),
            checkpoints=self.cfg.checkpoints, device=self.cfg.device, snr_offset_db=spec.snr_offset_db,
            transmitter_checkpoint=self.cfg.checkpoints if reads else None, **self._auth(spec.name, "pins"))
        return self._add(spec.name, "eavesdropper", args)

    def add_eavesdropper(self, spec: EveSpec, wait: bool = True) -> Service:
        """Attach one more eavesdropper while the stack runs."""
        with self._lock:
            svc = self._start_eve(spec)
        if wait:
            self._wait(svc)
        return svc

    def remove(self, name: str) -> None:
        """Stop a service for good (an eavesdropper detaches; nothing else is reconfigured)."""
        with self._lock:
            svc = self.services.pop(name)
        svc.stop()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                dead = [s for s in self.services.values() if s.wanted and not s.alive]
            for svc in dead:
                if not self.cfg.restart or self._stopping.is_set():
                    continue
                code = svc.proc.returncode if svc.proc else None
                if code == 2:  # a configuration error: restarting would fail the same way
                    svc.wanted = False
                    print(f"[launcher] {svc.name} exited with a configuration error; not restarting:\n"
                          f"{svc.log_tail(5)}", file=sys.stderr, flush=True)
                    continue
                svc.restarts += 1
                print(f"[launcher] {svc.name} exited ({code}); restart {svc.restarts} on its port",
                      file=sys.stderr, flush=True)
                svc.start()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every service, in reverse start order, then wait for them all (they shut down side by side, each
        within its own grace period); SIGKILL what is left after ``timeout``."""
        self._stopping.set()
        services = list(reversed(self.services.values()))
        for svc in services:
            svc.terminate()
        for svc in services:
            svc.reap(timeout)

    def state(self) -> dict[str, Any]:
        for svc in self.services.values():  # a restarted service keeps its gRPC port but not its metrics port
            if svc.alive:
                svc.read_ports()
        return {"urls": self.urls() if "control_panel" in self.services else {},
                "log_dir": str(self.cfg.log_dir), "auth_dir": str(self.auth_dir),
                "services": {n: {"pid": s.proc.pid if s.proc else None, "ports": s.ports, "log": str(s.log_path),
                                 "restarts": s.restarts} for n, s in self.services.items()}}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
