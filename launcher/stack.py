"""Start, supervise and stop the live stack as local processes.

Start order follows the dependencies: channel emulator, transmitter, control panel (Telemetry), receiver,
eavesdroppers. Command lines come from each service's settings spec (``<service>/settings.py``).

What each service is given (docs/design.md §8 lists every secret, who holds it and how long it lives):

- Credentials: the stack writes an authority key and one credential per principal into ``<log dir>/auth`` (0700)
  and gives each service only its own credential file. The verifying services (emulator, transmitter, receiver,
  the panel's telemetry) get the key; an eavesdropper gets a copy of its own credential and its pins (the audience
  key that verifies the panel's tokens to it), never the key, in a home of its own (``launcher.isolation``).
- Environment: each child gets a few process variables and its own settings only (``launcher.isolation.child_env``):
  the panel's bearer token reaches the panel alone, the self-noise key the transmitter and the receiver alone, and
  no ``$DIFFSEM_<OPTION>`` of the launcher's environment reaches anyone.
- Users: as root, each eavesdropper runs under a uid of its own, its home readable by that uid alone, and every child
  with umask 077: an eavesdropper cannot read the key, another credential, another process's environment, the panel's
  database or the logs. Not as root, every service runs as one user, and the launcher says at start that
  eavesdroppers are then trusted code. Under either, an eavesdropper shares the host's network (every loopback port,
  the panel's read API included) and reads world-readable files (the repository and its committed checkpoints):
  compose confines those, the launcher does not.
- Links: an eavesdropper's SNR offset and antennas (``-e NAME:ATTACK:OFFSET_DB:N_RX``) are the emulator's settings
  for that name (``--eavesdropper-link``), never the eavesdropper's own; without ``--seed`` every generator that protects is
  seeded from the OS.

Each service binds its port (0 = ephemeral) and writes it to a port file; the stack then waits for the gRPC
health service to say SERVING (``/healthz`` for the panel). A service that dies is restarted on the same port
(``restart=True``), so the others reconnect to the same address: a receiver killed mid-run reattaches to the
emulator and the run completes.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from diffsem.config import ARRAY_MODELS, CLASSIFIERS, DECODE_MODES, LinkConfig
from diffsem.defaults import KEY_ENV, checkpoint_dir
from launcher.isolation import EveHome, User, child_env, confinement, free_user, private_root
from launcher.specs import EAVESDROPPER, EMULATOR, PANEL, RECEIVER, TRANSMITTER
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import common_pb2
from services_common import auth
from services_common.client import DEADLINE_S, grpc_channel, health_status
from services_common.sizes import bundle_k
from services_common.spec import DEFAULT_PORTS, ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EveSpec:
    """One eavesdropper: ``name[:attack[:snr_offset_db[:n_rx]]]`` (offset relative to the legitimate link, dB;
    n_rx its receive antennas, used when the transmitter has several)."""

    name: str
    attack: str = "feature-classifier"
    snr_offset_db: float | None = None
    n_rx: int | None = None

    @classmethod
    def parse(cls, text: str) -> EveSpec:
        parts = text.split(":")
        if not parts[0] or len(parts) > 4:
            raise ValueError(f"eavesdropper {text!r}: use NAME[:ATTACK[:SNR_OFFSET_DB[:N_RX]]], e.g. "
                             "eve:feature-classifier:-3 or eve:feature-classifier:0:2")
        offset = n_rx = None
        if len(parts) >= 3 and parts[2]:
            try:
                offset = float(parts[2])
            except ValueError:
                raise ValueError(f"eavesdropper {text!r}: SNR offset {parts[2]!r} is not a number") from None
        if len(parts) == 4 and parts[3]:
            if not parts[3].isdigit():
                raise ValueError(f"eavesdropper {text!r}: receive antennas {parts[3]!r} must be an integer 1 to 8")
            n_rx = int(parts[3])
        return cls(parts[0], parts[1] if len(parts) > 1 and parts[1] else "feature-classifier", offset, n_rx)


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
    n_tx: int = option(1, "transmit antennas (1, 2, 4 or 8); > 1 makes every link a flat multi-antenna link")
    antenna_channel: str = option("rayleigh", "with --n-tx > 1: every link's channel, i.i.d. Rayleigh or 3GPP CDL "
                                  "between ULAs", choices=ARRAY_MODELS)
    null_space: bool = False  # self-noise in the null space of the legitimate channel (--null-space)
    beam_fraction: float | None = option(None, "fraction of the transmit power on the beam, in (0, 1] (default 1, "
                                         "or 0.01 with --null-space)")
    csi_estimator: str = option("perfect", "with --n-tx > 1: the CSI the receiver feeds back, exact or LS from "
                                "pilots", choices=("perfect", "ls"))
    csi_delay: int = option(0, "with --n-tx > 1: frames between the CSI measurement and the frame it shapes (aged "
                            "at 3 km/h)")
    self_noise: str = option("random", "keyed: eps_self from a secret only the transmitter and receiver get (see "
                             "--key-file)", choices=("random", "keyed"))
    key_file: Path | None = option(None, "keyed self-noise secret; default $DIFFSEM_SELF_NOISE_KEY (hex), else a "
                                   "fresh random key")
    seed: int | None = option(None, "seed of every link's noise and of random self-noise: a reproducible run, whose "
                              "noise anyone who knows the seed can replay (default: each drawn from the OS)")
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


def eve_link(spec: EveSpec) -> str | None:
    """The emulator's ``--eavesdropper-link`` for ``spec`` (NAME=OFFSET_DB[:N_RX]), or None without an offset or
    antennas (the emulator's default for new eavesdropper links)."""
    if spec.snr_offset_db is None and spec.n_rx is None:
        return None
    offset = "" if spec.snr_offset_db is None else f"{spec.snr_offset_db:g}"
    return f"{spec.name}={offset}" + ("" if spec.n_rx is None else f":{spec.n_rx}")


class Service:
    """One child process: its command line, its whole environment (``env``: ``launcher.isolation.child_env``), its
    user (None: the launcher's), port file, log file and restart count."""

    def __init__(self, name: str, module: str, args: list[str], log_dir: Path, health: str,
                 env: dict[str, str] | None = None, user: User | None = None, port_dir: Path | None = None,
                 wrap: Callable[[list[str]], list[str]] | None = None, prefix: tuple[str, ...] = ()):
        self.name, self.module, self.args, self.health, self.user = name, module, args, health, user
        self.env = child_env() if env is None else env
        self.wrap = wrap  # the command line that starts it as ``user`` (launcher.isolation.Confinement)
        self.prefix = prefix  # runs the command inside it, e.g. ("ip", "netns", "exec", "host1"): another host
        self.port_file = (port_dir or log_dir) / f"{name}.port.json"
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}
        self.restarts = 0
        self.wanted = True

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", self.module, *self.args, "--port-file", str(self.port_file)]
        log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")  # the child's
        self.proc = subprocess.Popen([*self.prefix, *(self.wrap(argv) if self.wrap else argv)], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True, umask=0o077)
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


class StartupError(RuntimeError):
    pass


class Stack:
    """The running stack. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, cfg: StackConfig):
        self.cfg = cfg
        if cfg.log_dir is None:
            cfg.log_dir = Path(tempfile.mkdtemp(prefix="diffsem-stack-"))
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        self.auth_dir = cfg.log_dir / "auth"
        self.auth_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.auth_dir, 0o700)
        self.key = auth.init_dir(self.auth_dir, [e.name for e in cfg.eavesdroppers])
        # the eavesdroppers' homes: in the system's temp folder, which every uid can cross to reach its own
        self.eve_root = private_root(Path(tempfile.mkdtemp(prefix="diffsem-eavesdroppers-")))
        self.eve_users: dict[str, User] = {}
        self.confinement, self.trust_note = confinement(cfg.checkpoints)
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
    def _add(self, name: str, module: str, args: list[str], health: str = "grpc", own_env: dict[str, str] | None = None,
             user: User | None = None, home: Path | None = None) -> Service:
        """Start a child with ``own_env`` (its settings) over the process basics, as ``user``, with ``home``."""
        wrap = None
        if user is not None and self.confinement is not None:
            conf, stage = self.confinement, self.eve_root / f".mounts-{name}"
            wrap = lambda argv: conf.command(user, argv, stage)  # noqa: E731
        svc = Service(name, module, args, self.cfg.log_dir, health, child_env(own_env, home),  # type: ignore[arg-type]
                      user, home, wrap)
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

    def _auth(self, credential: str) -> dict[str, Path]:
        """Spec values for a verifying service's own credential and the authority key."""
        return {"credential_file": self.auth_dir / f"{credential}.credential",
                "auth_key_file": self.auth_dir / "authority.key"}

    def _panel_env(self) -> dict[str, str]:
        """The panel's own settings from the launcher's environment: its database, bearer token, data and chart."""
        env = {f"{ENV_PREFIX}DB": os.environ.get(f"{ENV_PREFIX}DB") or str(self.cfg.log_dir / "panel.db")}
        for name in ("DIFFSEM_PANEL_TOKEN", "DIFFSEM_DATA_DIR", "DIFFSEM_SWEEP_FILE"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return env

    def _key(self) -> tuple[Path | None, dict[str, str] | None]:
        """Keyed self-noise: the key file, or the environment, that only the transmitter and receiver get."""
        if self.cfg.self_noise != "keyed":
            return None, None
        if self.cfg.key_file is not None:
            return self.cfg.key_file, None
        return None, {KEY_ENV: os.environ.get(KEY_ENV) or secrets.token_hex(32)}

    def start(self) -> Stack:
        c = self.cfg
        if self.trust_note:
            print(self.trust_note, file=sys.stderr, flush=True)
        try:
            emu = self._add("channel_emulator", "channel_emulator", EMULATOR.argv(
                host=c.host, port=c.emulator_port, snr_db=c.snr_db, seed=c.seed, queue_size=c.queue_size,
                auth_key_file=self.auth_dir / "authority.key", k=bundle_k(c.checkpoints), **c.phy,
                n_tx=c.n_tx, null_space=c.null_space, beam_fraction=c.beam_fraction, csi_estimator=c.csi_estimator,
                csi_delay=c.csi_delay, antenna_channel=c.antenna_channel,
                eavesdropper_link=[link for e in c.eavesdroppers if (link := eve_link(e))]))
            self._wait_ports(emu)  # the transmitter needs only its address; it is waited for below with the rest
            model = dict(checkpoints=c.checkpoints, device=c.device)
            key_file, key_env = self._key()
            tx = self._add("transmitter", "transmitter", TRANSMITTER.argv(
                host=c.host, port=c.transmitter_port, emulator=self.address("channel_emulator"), seed=c.seed,
                no_self_noise=c.t_star is None, t_star=c.t_star,
                self_noise="keyed" if key_env is not None or key_file else None, key_file=key_file,
                **model, **self._auth(auth.TRANSMITTER)), own_env=key_env)
            self._wait_ports(tx)  # its address is known before its model is loaded
            panel = self._add("control_panel", "control_panel", [*PANEL.argv(
                host=c.host, http_port=c.http_port, telemetry_port=c.telemetry_port,
                transmitter=self.address("transmitter"), emulator=self.address("channel_emulator"),
                credential_file=self.auth_dir / f"{auth.CONTROL}.credential",
                auth_key_file=self.auth_dir / "authority.key"), *c.panel_args],
                health="http", own_env=self._panel_env())
            self._wait(panel)
            rx = self._add("receiver", "receiver", RECEIVER.argv(
                host=c.host, port=c.receiver_port, emulator=self.address("channel_emulator"),
                telemetry=self.address("control_panel", "telemetry"), mode=c.mode, classifier=c.classifier,
                steps=c.steps, max_batch=c.max_batch, max_wait_ms=c.max_wait_ms, threads=c.receiver_threads,
                key_file=key_file, **model, **self._auth(auth.RECEIVER)), own_env=key_env)
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
        user = None
        if self.confinement is not None:
            user = self.eve_users.get(spec.name) or free_user({u.uid for u in self.eve_users.values()})
            self.eve_users[spec.name] = user
        home = EveHome(self.eve_root, spec.name, user)
        reads = spec.name in self.cfg.reads_transmitter_weights
        args = EAVESDROPPER.argv(
            host=self.cfg.host, port=port, name=spec.name, attack=spec.attack,
            emulator=self.address("channel_emulator"), telemetry=self.address("control_panel", "telemetry"),
            checkpoints=self.cfg.checkpoints, device=self.cfg.device,
            transmitter_checkpoint=self.cfg.checkpoints if reads else None,
            credential_file=home.install(self.auth_dir / f"{spec.name}.credential"),
            auth_pins_file=home.install(self.auth_dir / auth.pins_file(spec.name)))
        return self._add(spec.name, "eavesdropper", args, user=user, home=home.path)

    def add_eavesdropper(self, spec: EveSpec, wait: bool = True) -> Service:
        """Attach one more eavesdropper while the stack runs: its link's offset is set on the emulator first, by the
        control role (and kept in the emulator's command line, for a restart)."""
        with self._lock:
            if (link := eve_link(spec)) is not None:
                emu = self.services["channel_emulator"]
                emu.args += EMULATOR.argv(eavesdropper_link=[link])
                self._configure_eve_link(spec)
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

    def _configure_eve_link(self, spec: EveSpec) -> None:
        """The operator's settings of ``spec``'s link on the running emulator (created now, before it attaches)."""
        settings = ch_pb.LinkSettings(snr_offset_db=spec.snr_offset_db)
        if spec.n_rx is not None:
            settings.antennas.n_rx = spec.n_rx
        update = ch_pb.LinkUpdate(name=spec.name, role=common_pb2.ROLE_EAVESDROPPER, settings=settings)
        credential = auth.issue(self.key, auth.CONTROL, auth.CONTROL)
        with grpc_channel(self.address("channel_emulator"), credential) as ch:
            ch_grpc.ChannelEmulatorStub(ch).Configure(ch_pb.ConfigureRequest(links=[update]), timeout=DEADLINE_S)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every service, in reverse start order, then wait for them all (they shut down side by side, each
        within its own grace period); SIGKILL what is left after ``timeout``. The eavesdroppers' homes go."""
        self._stopping.set()
        services = list(reversed(self.services.values()))
        for svc in services:
            svc.terminate()
        for svc in services:
            svc.reap(timeout)
        shutil.rmtree(self.eve_root, ignore_errors=True)

    def state(self) -> dict[str, Any]:
        for svc in self.services.values():  # a restarted service keeps its gRPC port but not its metrics port
            if svc.alive:
                svc.read_ports()
        return {"urls": self.urls() if "control_panel" in self.services else {},
                "log_dir": str(self.cfg.log_dir), "auth_dir": str(self.auth_dir),
                "services": {n: {"pid": s.proc.pid if s.proc else None, "ports": s.ports, "log": str(s.log_path),
                                 "restarts": s.restarts, "uid": s.user.uid if s.user else os.geteuid()}
                             for n, s in self.services.items()}}

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
