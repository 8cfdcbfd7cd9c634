"""A real control panel process in front of stand-in upstream services, for the panel's own tests and benchmark.

The stand-ins are real gRPC servers speaking the project's protos: ``FakeEmulator`` lists links and honours the
``Configure`` contract (``validate_only``, NOT_FOUND for an unknown link, INVALID_ARGUMENT for a non-finite value);
``FakeTransmitter`` validates t* like the real one and, for every message it is asked to send, reports a decision to
the panel's Telemetry as each configured listener (after ``delay_s`` and, if given, once ``gate`` is set; ``silent``
listeners never report). No model runs, so a test of the panel's bookkeeping takes seconds, not minutes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx

from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc, transmitter_pb2, transmitter_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
T = 1000


@dataclass
class FakeEmulator(ch_grpc.ChannelEmulatorServicer):
    links: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "receiver": {"role": common_pb2.ROLE_LEGITIMATE, "snr_db": 10.0}, "eve": {"role": common_pb2.ROLE_EAVESDROPPER,
                                                                                  "snr_db": 10.0}})
    applied: list[ch_pb.ConfigureRequest] = field(default_factory=list)

    def GetState(self, request: Any, context: Any) -> ch_pb.ChannelState:
        return ch_pb.ChannelState(links=[ch_pb.LinkState(name=n, role=lk["role"], attached=True, snr_db=lk["snr_db"],
                                                         settings=ch_pb.LinkSettings(fading="none"))
                                       for n, lk in self.links.items()])

    def Configure(self, request: ch_pb.ConfigureRequest, context: Any) -> ch_pb.ChannelState:
        for u in request.links:
            if u.name not in self.links:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no link named {u.name!r}")
            if u.settings.HasField("snr_db") and not math.isfinite(u.settings.snr_db):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"snr_db={u.settings.snr_db} must be a finite number")
        if not request.validate_only:
            self.applied.append(request)
            for u in request.links:
                if u.settings.HasField("snr_db"):
                    self.links[u.name]["snr_db"] = u.settings.snr_db
        return self.GetState(None, context)


@dataclass
class FakeTransmitter(transmitter_pb2_grpc.TransmitterServicer):
    telemetry: str = ""
    listeners: dict[str, int] = field(default_factory=lambda: {"receiver": common_pb2.ROLE_LEGITIMATE,
                                                                "eve": common_pb2.ROLE_EAVESDROPPER})
    silent: set[str] = field(default_factory=set)
    delay_s: float = 0.0
    gate: threading.Event | None = None  # when given, reports wait until it is set (uploads stay in flight)
    t_star: int | None = 300
    applied: list[transmitter_pb2.TransmitterConfig] = field(default_factory=list)
    sent: int = 0

    def GetState(self, request: Any, context: Any) -> transmitter_pb2.TransmitterState:
        state = transmitter_pb2.TransmitterState(num_train_timesteps=T, model_id="fake", a=0.5)
        if self.t_star is not None:
            state.t_star = self.t_star
        return state

    def Configure(self, request: transmitter_pb2.TransmitterConfig, context: Any) -> transmitter_pb2.TransmitterState:
        if request.HasField("t_star") and not 0 <= request.t_star < T:
            context.abort(grpc.StatusCode.OUT_OF_RANGE, f"t_star={request.t_star} is out of range [0, {T - 1}]")
        if not request.validate_only:
            self.applied.append(request)
            if request.HasField("t_star"):
                self.t_star = request.t_star
            elif request.disable_self_noise:
                self.t_star = None
        return self.GetState(None, context)

    def Transmit(self, request: transmitter_pb2.TransmitRequest, context: Any) -> transmitter_pb2.TransmitReply:
        ids = list(request.message_ids)
        self.sent += len(ids)
        t_star = self.t_star
        threading.Timer(self.delay_s, self._report, (ids, t_star)).start()
        return transmitter_pb2.TransmitReply(message_ids=ids, seqs=list(range(len(ids))))

    def _report(self, ids: list[str], t_star: int | None) -> None:
        """Receiver right on every message; an eavesdropper right on fewer as t* grows (label 0 = the guess)."""
        if self.gate is not None:
            self.gate.wait(60)
        with grpc.insecure_channel(self.telemetry) as ch:
            stub = telemetry_pb2_grpc.TelemetryStub(ch)
            for name, role in self.listeners.items():
                if name in self.silent:
                    continue
                reports = [telemetry_pb2.Report(message_id=m, listener=name, role=role, has_label=True,
                                                label=_truth(m) if role == common_pb2.ROLE_LEGITIMATE
                                                or (_index(m) % 10) * 100 >= (t_star or 0) else 99)
                           for m in ids]
                stub.Report(telemetry_pb2.ReportRequest(reports=reports), timeout=10)


def _index(message_id: str) -> int:
    tail = message_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _truth(message_id: str) -> int:
    """The MNIST test label of a run message ``<run>-<index>`` (the receiver of this fake is always right)."""
    from diffsem.data import load_split

    global _LABELS
    if _LABELS is None:
        _LABELS = load_split("mnist", "test")[1].tolist()
    return _LABELS[_index(message_id)]


_LABELS: list[int] | None = None


@dataclass
class PanelUnderTest:
    """``python -m control_panel`` with its upstreams faked; ``url`` is its HTTP address."""

    proc: subprocess.Popen
    url: str
    telemetry: str
    emulator: FakeEmulator
    transmitter: FakeTransmitter
    servers: list[grpc.Server]
    db: Path
    log: Path

    def http(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def stop(self, kill: bool = False) -> int:
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        return self.proc.wait(30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        for s in self.servers:
            s.stop(0)


def serve_fakes(emulator: FakeEmulator, transmitter: FakeTransmitter) -> tuple[list[grpc.Server], str, str]:
    out = []
    for add, servicer in ((ch_grpc.add_ChannelEmulatorServicer_to_server, emulator),
                          (transmitter_pb2_grpc.add_TransmitterServicer_to_server, transmitter)):
        server = grpc.server(futures.ThreadPoolExecutor(8))
        add(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        out.append((server, f"127.0.0.1:{port}"))
    return [s for s, _ in out], out[0][1], out[1][1]


def start_panel(folder: Path, *args: str, emulator: FakeEmulator | None = None,
                transmitter: FakeTransmitter | None = None, db: Path | None = None,
                timeout: float = 60.0) -> PanelUnderTest:
    """Start the fakes (unless given, already serving) and a panel process on ephemeral ports."""
    emulator = emulator or FakeEmulator()
    transmitter = transmitter or FakeTransmitter()
    servers, emu_addr, tx_addr = serve_fakes(emulator, transmitter)
    db = db or folder / "panel.db"
    port_file = folder / f"panel-{time.monotonic_ns()}.json"
    log = folder / "panel.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DIFFSEM_PANEL_TOKEN", None)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "control_panel", "--http-port", "0", "--telemetry-port", "0",
                                 "--port-file", str(port_file), "--db", str(db), "--transmitter", tx_addr,
                                 "--emulator", emu_addr, *args], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            for s in servers:
                s.stop(0)
            raise RuntimeError(f"the panel did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    ports = json.loads(port_file.read_text())
    telemetry = f"127.0.0.1:{ports['telemetry']}"
    transmitter.telemetry = telemetry
    return PanelUnderTest(proc, f"http://127.0.0.1:{ports['http']}", telemetry, emulator, transmitter, servers, db, log)
