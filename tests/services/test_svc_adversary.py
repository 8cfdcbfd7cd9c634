"""The eavesdropper cannot cheat the measurement (issue 19), tried from the attacker's position in the launcher stack:
a process that holds its own valid eavesdropper credential (``mallory``), beside the stack's own eavesdroppers.

The stack is started as an operator would with secrets and stray settings in the launcher's environment (a panel
token, a self-noise key, ``DIFFSEM_SEED=0``, ``DIFFSEM_SNR_DB=99``) and no ``--seed``: none of them may reach a child
that is not their owner, and every generator that protects is seeded from the OS.
"""

from __future__ import annotations

import json
import math
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from svc_helpers import LiveStack, child_env, start_stack, stop_stack, wait_until

from diffsem.attacks.replay import Replayer
from launcher.isolation import NOT_ROOT
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import (
    common_pb2,
    eavesdropper_pb2,
    eavesdropper_pb2_grpc,
    frame_pb2,
    receiver_pb2,
    telemetry_pb2,
    telemetry_pb2_grpc,
    transmitter_pb2,
    transmitter_pb2_grpc,
)
from services_common import auth
from services_common.client import grpc_channel
from services_common.frames import received_batch
from services_common.sizes import MAX_REPORTS
from services_common.tensors import to_numpy, to_proto

TOKEN = "adversary-test-token"
KEY_HEX = secrets.token_hex(32)
ATTACKER = "mallory"
EVE, EVE2 = common_pb2.ROLE_EAVESDROPPER, "eve2"
STRAYS = {"DIFFSEM_PANEL_TOKEN": TOKEN, "DIFFSEM_SELF_NOISE_KEY": KEY_HEX, "DIFFSEM_SEED": "0", "DIFFSEM_SNR_DB": "99"}


@pytest.fixture(scope="module")
def stack(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    live = start_stack(checkpoints, tmp_path_factory.mktemp("adversary"), "-e", "eve:inversion-decoder:0",
                       "-e", f"{EVE2}:feature-classifier:-5", "--snr-db", "20", "--receiver-threads", "1",
                       env=child_env() | STRAYS)
    yield live
    assert stop_stack(live) == 0


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


class Tap:
    """The attacker's own Listen stream (its own credential), read on a thread; ``raw`` replaces the request."""

    def __init__(self, stack: LiveStack, name: str = ATTACKER, raw: bytes | None = None):
        self.ch = stack.grpc("channel_emulator", auth.EAVESDROPPER, name=name)
        req = raw if raw is not None else ch_pb.ListenRequest(role=EVE, name=name).SerializeToString()
        listen = self.ch.unary_stream("/diffsem.v1.ChannelEmulator/Listen", request_serializer=lambda b: b,
                                      response_deserializer=frame_pb2.ReceivedFrame.FromString)
        self.call = listen(req, timeout=600)
        self.got: queue.Queue[frame_pb2.ReceivedFrame] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: links(stack).get(name, {}).get("attached"), 30, f"{name} attached")

    def _read(self) -> None:
        try:
            for rf in self.call:
                self.got.put(rf)
        except grpc.RpcError:
            pass

    def take(self, n: int, timeout: float = 120.0) -> list[frame_pb2.ReceivedFrame]:
        """The next ``n`` frames (retransmitted ones included), waiting up to ``timeout`` for each."""
        return [self.got.get(timeout=timeout) for _ in range(n)]

    def drain(self) -> list[frame_pb2.ReceivedFrame]:
        """Every frame received and not taken yet."""
        out = []
        while not self.got.empty():
            out.append(self.got.get_nowait())
        return out

    def close(self) -> None:
        self.call.cancel()
        self.ch.close()


def links(stack: LiveStack) -> dict[str, Any]:
    with stack.http() as c:
        return c.get("/api/summary").json()["links"]


def run(stack: LiveStack, n: int, start: int = 0) -> dict[str, Any]:
    """n test images through the stack; a tap that never reports is waited for 1 s at most."""
    with stack.http() as c:
        r = c.post("/api/runs", json={"n": n, "start": start, "batch_size": 32, "report_deadline_s": 1},
                   headers=bearer())
        assert r.status_code in (200, 201, 202), r.text
    return stack.wait_run(r.json()["id"])


def replay(replayer: Replayer, frames: list[frame_pb2.ReceivedFrame], k: int = 256) -> None:
    """What the noise-replay attack does with frames it intercepted (diffsem/attacks/replay.py)."""
    batch = received_batch(frames, k)
    for idx, header in batch.groups:  # the core's header of each group of frames, their seq included
        replayer.strip(batch.z[idx], batch.abar_eff[idx], header)


# ---- item 1 and the guard of item 2: self-noise no listener can predict -------------------------------------------
def test_the_default_stacks_noise_is_from_the_os_and_only_an_operators_seed_makes_it_replayable(
        stack: LiveStack) -> None:
    with stack.http() as c:
        summary = c.get("/api/summary").json()
    assert summary["seeded"] is False and summary["seeded_by"] == []  # DIFFSEM_SEED=0 reached no one
    assert all("seed" not in link for link in summary["links"].values())  # a link's seed is never reported
    for name in ("transmitter", "channel_emulator"):
        assert "--seed" not in Path(f"/proc/{stack.pid(name)}/cmdline").read_bytes().decode().split("\0")
    tap = Tap(stack)
    try:
        replayer = Replayer(256)
        first = run(stack, 64)
        replay(replayer, tap.take(64 + first["retransmits"]))
        assert replayer.counts["matched"] == 0 and replayer.locked is None

        with stack.http() as c:  # the operator seeds the self-noise (as the live-vs-offline benchmark does)
            assert c.put("/api/links", json={"tx_seed": 42}, headers=bearer()).status_code == 200
            summary = c.get("/api/summary").json()
        assert summary["seeded"] is True and summary["seeded_by"] == ["transmitter"]
        with stack.grpc("transmitter") as ch:
            reseeded_at = transmitter_pb2_grpc.TransmitterStub(ch).GetState(common_pb2.InfoRequest(), timeout=10).frames
        done = run(stack, 64, start=64)
        assert done["seeded"] is True and done["seeded_by"] == ["transmitter"]
        frames = tap.take(64 + done["retransmits"]) + tap.drain()
        replay(replayer, frames)
        assert replayer.counts["matched"] == sum(rf.frame.seq >= reseeded_at for rf in frames) >= 64
        assert replayer.locked == (42, reseeded_at)
    finally:
        tap.close()


# ---- item 3: operators set links, listeners do not ------------------------------------------------------------------
def test_a_listener_asking_for_60_db_gets_its_frames_at_the_operators_snr(stack: LiveStack) -> None:
    """The attacker sends the old ``ListenRequest.defaults`` (field 3) asking for 60 dB, its own seed, perfect CSI and
    a huge OFDM grid; the noise it then receives is measured against frames of known symbols."""
    wish = ch_pb.LinkSettings(snr_db=60, seed=1, estimator="perfect", phy="ofdm", fft_size=4096, ofdm_symbols=4096)
    body = wish.SerializeToString()
    raw = ch_pb.ListenRequest(role=EVE, name="greedy").SerializeToString() + b"\x1a" + _varint(len(body)) + body
    tap = Tap(stack, "greedy", raw)
    try:
        x = torch.randn(16, 256, generator=torch.Generator().manual_seed(5))
        x = x / x.pow(2).mean(1, keepdim=True).sqrt()
        frames = [frame_pb2.Frame(message_id=f"probe{i}", seq=10**9 + i, symbols=to_proto(x[i]),
                                  header=frame_pb2.PublicHeader(a=1.0, send_time=time.time())) for i in range(16)]
        with stack.grpc("channel_emulator", auth.TRANSMITTER) as ch:  # the test plays the transmitter here
            ch_grpc.ChannelEmulatorStub(ch).Send(ch_pb.SendRequest(frames=frames), timeout=30)
        got = tap.take(16)
    finally:
        tap.close()
    y = torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in got])
    noise = float((y - x).pow(2).mean())  # per real dim: N0 = 10^(-SNR/10) on the operator's flat AWGN link
    assert noise == pytest.approx(10 ** (-20 / 10), rel=0.15), noise  # a new link's: the legitimate SNR, 20 dB
    assert not any(rf.sigma2_re for rf in got)  # flat, not the OFDM grid asked for


def _varint(n: int) -> bytes:
    out = b""
    while True:
        out += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            return out


def test_an_ofdm_grid_larger_than_the_window_bound_is_refused_with_both_sizes(stack: LiveStack) -> None:
    with stack.http() as c:
        r = c.put("/api/links", json={"links": {EVE2: {"phy": "ofdm", "fft_size": 4096, "ofdm_symbols": 4096}}},
                  headers=bearer())
        assert r.status_code == 422, r.text
        assert "at most 64 MB" in r.text and "8320.0 MB" in r.text
        assert c.get("/api/summary").json()["links"][EVE2]["phy"] == "flat"


def test_the_launchers_offset_is_the_emulators_setting(stack: LiveStack) -> None:
    state = links(stack)
    assert state[EVE2]["snr_offset_db"] == -5 and state[EVE2]["snr_db"] == 15  # -e eve2:feature-classifier:-5


# ---- item 4: secrets stay with their owner --------------------------------------------------------------------------
def environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(p.split("=", 1) for p in pairs if "=" in p)


def test_each_child_gets_only_its_own_settings(stack: LiveStack) -> None:
    for name in ("channel_emulator", "transmitter", "control_panel", "receiver", "eve", EVE2):
        env = environ(stack.pid(name))
        assert env.get("DIFFSEM_PANEL_TOKEN") == (TOKEN if name == "control_panel" else None), name
        for stray in ("DIFFSEM_SELF_NOISE_KEY", "DIFFSEM_SEED", "DIFFSEM_SNR_DB", "DIFFSEM_AUTH_KEY_FILE",
                      "DIFFSEM_CREDENTIAL_FILE", "DIFFSEM_AUTH_PINS_FILE"):
            assert stray not in env, (name, stray)
        assert KEY_HEX not in " ".join(env.values()), name
        assert {k for k in env if k.startswith("DIFFSEM_")} <= {"DIFFSEM_METRICS_PORT", "DIFFSEM_DB",
                                                                 "DIFFSEM_PANEL_TOKEN", "DIFFSEM_DATA_DIR"}, name


PROBE = r"""
import json, os, sys
out = {}
for path in sys.argv[1:]:
    try:
        open(path, "rb").read(1)
        out[path] = "read"
    except OSError as exc:
        out[path] = type(exc).__name__
print(json.dumps(out))
"""


def test_an_eavesdropper_cannot_read_another_principals_secrets(stack: LiveStack) -> None:
    """From inside eve's process (its mount namespace, uid, gid, no groups, no capabilities): the authority key,
    every other credential, eve2's files, the panel's database, the logs and the other processes' environments are
    unreadable; its own credential is readable."""
    out = stack.out_path.read_text()
    if os.geteuid() != 0:
        assert NOT_ROOT in out  # without root, the launcher says eavesdroppers are trusted code
        pytest.skip("the launcher is not root here: eavesdroppers share its user (and it said so)")
    if "is not readable by other users" in out:  # a private checkout (.ci/run opens its own): nothing to confine from
        pytest.skip("the checkout is not readable by other users, so the launcher runs eavesdroppers as trusted "
                    "code (and said so); .ci/run makes its checkout readable")
    assert "trusted code" not in out, out
    services = stack.state["services"]
    eve = stack.pid("eve")
    uid = services["eve"]["uid"]
    assert uid not in (0, services[EVE2]["uid"]) and services["control_panel"]["uid"] == 0
    auth_dir, log_dir = Path(stack.state["auth_dir"]), Path(stack.state["log_dir"])
    own = [a for a in Path(f"/proc/{eve}/cmdline").read_bytes().decode().split("\0") if a.endswith(".credential")]
    eve2_home = [a for a in Path(f"/proc/{stack.pid(EVE2)}/cmdline").read_bytes().decode().split("\0")
                 if a.endswith(".credential")]
    secret = [str(auth_dir / f) for f in ("authority.key", "control.credential", "receiver.credential",
                                           "transmitter.credential", "eve.credential", f"{EVE2}.credential")]
    secret += [*eve2_home, str(log_dir / "panel.db"), str(log_dir / "control_panel.log")]
    secret += [f"/proc/{stack.pid(n)}/environ" for n in ("control_panel", "transmitter", "receiver", EVE2)]
    probe = subprocess.run(["nsenter", f"--target={eve}", "--mount", "--", "setpriv", f"--reuid={uid}",
                            f"--regid={uid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all",
                            "--bounding-set=-all", "--", sys.executable, "-c", PROBE, *own, *secret],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen[own[0]] == "read"
    assert {path: seen[path] for path in secret} == dict.fromkeys(secret, "PermissionError")


# ---- item 5: credentials with an audience and an expiry -------------------------------------------------------------
class Capture:
    """An eavesdropper's gRPC service as a malicious one runs it: it answers ``Info`` and keeps the token it got."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
        handler = grpc.unary_unary_rpc_method_handler(self._info, request_deserializer=common_pb2.InfoRequest.FromString,
                                                      response_serializer=common_pb2.ServiceInfo.SerializeToString)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "diffsem.v1.Eavesdropper", {"Info": handler})])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _info(self, request: Any, context: grpc.ServicerContext) -> common_pb2.ServiceInfo:
        self.tokens += [v for k, v in context.invocation_metadata() if k == auth.METADATA_KEY]
        return common_pb2.ServiceInfo(service="eavesdropper", name="eve")


def test_a_token_captured_by_an_eavesdropper_is_refused_at_another_service_and_after_expiry(
        stack: LiveStack) -> None:
    cap = Capture()
    try:  # the operator calls what it takes for eavesdropper "eve"'s service, as the panel's client would
        with stack.grpc("eve", address=f"127.0.0.1:{cap.port}") as ch:
            eavesdropper_pb2_grpc.EavesdropperStub(ch).Info(common_pb2.InfoRequest(), timeout=10)
    finally:
        cap.server.stop(0)
    (captured,) = cap.tokens
    assert captured.split(".")[1:4] == [auth.CONTROL, auth.CONTROL, auth.eavesdropper_audience("eve")]
    assert stack.credential(auth.CONTROL).split(".")[-1] not in captured  # the control secret never travelled

    def call(address: str, method: str, request: Any, response: Any, *tokens: str) -> grpc.StatusCode:
        with grpc.insecure_channel(address) as ch:
            rpc = ch.unary_unary(method, request_serializer=type(request).SerializeToString,
                                 response_deserializer=response.FromString)
            try:
                rpc(request, timeout=10, metadata=[(auth.METADATA_KEY, t) for t in tokens])
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                return exc.code()

    emu, tx = stack.address("channel_emulator"), stack.address("transmitter")
    configure = ch_pb.ConfigureRequest(links=[ch_pb.LinkUpdate(name="eve", settings=ch_pb.LinkSettings(snr_db=60))])
    own = auth.token(stack.credential(auth.EAVESDROPPER, ATTACKER), auth.EMULATOR_AUDIENCE)
    cases = {  # replayed where it was not meant for: refused; with the attacker's own token beside it: refused
        "emulator Configure": call(emu, "/diffsem.v1.ChannelEmulator/Configure", configure, ch_pb.ChannelState,
                                   captured),
        "emulator Configure + own token": call(emu, "/diffsem.v1.ChannelEmulator/Configure", configure,
                                               ch_pb.ChannelState, own, captured),
        "transmitter Configure": call(tx, "/diffsem.v1.Transmitter/Configure",
                                      transmitter_pb2.TransmitterConfig(t_star=0), transmitter_pb2.TransmitterState,
                                      captured),
        "receiver Info": call(stack.address("receiver"), "/diffsem.v1.Receiver/Info", common_pb2.InfoRequest(),
                              common_pb2.ServiceInfo, captured),
        "eve2 Info": call(stack.address(EVE2), "/diffsem.v1.Eavesdropper/Info", common_pb2.InfoRequest(),
                          common_pb2.ServiceInfo, captured),
    }
    assert cases == dict.fromkeys(cases, grpc.StatusCode.UNAUTHENTICATED)
    assert call(emu, "/diffsem.v1.ChannelEmulator/Configure", configure, ch_pb.ChannelState, own) == \
        grpc.StatusCode.PERMISSION_DENIED  # the attacker's own token is its own role's
    info = common_pb2.InfoRequest()
    assert call(stack.address("eve"), "/diffsem.v1.Eavesdropper/Info", info, common_pb2.ServiceInfo, captured) == \
        grpc.StatusCode.OK  # where it was meant for, and while it lives
    expired = auth.token(stack.credential(auth.CONTROL), auth.eavesdropper_audience("eve"),
                         now=time.time() - auth.TOKEN_TTL_S - auth.SKEW_S - 5)  # one captured 5 s too long ago
    assert call(stack.address("eve"), "/diffsem.v1.Eavesdropper/Info", info, common_pb2.ServiceInfo, expired) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert links(stack)["eve"]["snr_db"] == 20  # nothing the attacker sent changed the channel


# ---- item 6: bounded reads ------------------------------------------------------------------------------------------
def report(**fields: Any) -> telemetry_pb2.ReportRequest:
    base = dict(message_id="nope-1", listener=ATTACKER, role=EVE, method="noise", has_label=True, label=3)
    return telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(**(base | fields))])


def test_reports_out_of_bounds_are_refused_before_anything_is_stored(stack: LiveStack) -> None:
    nan_image = common_pb2.Tensor(data=b"\xff" * 3136, shape=[1, 28, 28], dtype=common_pb2.DTYPE_FLOAT32)
    cases = {
        "a 2 MB method": (report(method="m" * 2_000_000), grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max"),
        "a long method": (report(method="m" * 129), grpc.StatusCode.INVALID_ARGUMENT, "method has 129 characters"),
        "a long error": (report(error="e" * 513), grpc.StatusCode.INVALID_ARGUMENT, "error has 513"),
        "a long threat model": (report(threat_model="w" * 129), grpc.StatusCode.INVALID_ARGUMENT,
                                "threat_model has 129"),
        "a long judge name": (report(judge_labels={"j" * 65: 1}), grpc.StatusCode.INVALID_ARGUMENT, "judge name"),
        "17 judges": (report(judge_labels={f"j{i}": 1 for i in range(17)}), grpc.StatusCode.INVALID_ARGUMENT,
                      "at most 16"),
        "an infinite latency": (report(latency_ms=math.inf), grpc.StatusCode.INVALID_ARGUMENT, "must be finite"),
        "a NaN abar": (report(abar_eff=math.nan), grpc.StatusCode.INVALID_ARGUMENT, "must be finite"),
        "a NaN image": (report(reconstruction=nan_image), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
        "one report too many": (telemetry_pb2.ReportRequest(reports=[report().reports[0]] * (MAX_REPORTS + 1)),
                                grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_REPORTS}"),
    }
    with stack.http() as c:
        before = c.get("/api/summary").json()
    with stack.grpc("control_panel", auth.EAVESDROPPER, key="telemetry", name=ATTACKER) as ch:
        stub = telemetry_pb2_grpc.TelemetryStub(ch)
        for what, (req, code, text) in cases.items():
            with pytest.raises(grpc.RpcError) as err:
                stub.Report(req, timeout=10)
            assert (err.value.code(), text in err.value.details()) == (code, True), (what, err.value.details())
        with stack.http() as c:
            assert {k: c.get("/api/summary").json()[k] for k in ("unmatched_reports", "listeners", "messages")} == \
                {k: before[k] for k in ("unmatched_reports", "listeners", "messages")}
        assert stub.Report(report(), timeout=10).unmatched == 1  # within bounds: read, and counted as unmatched


# larger than every service's largest request (the emulator's: a Send of 4096 frames from 8 transmit antennas,
# about 38.5 MiB) and below what a client sends (64 MiB), so that the server is the one that refuses it
OVERSIZED = 48 * 2**20


@pytest.mark.parametrize(("service", "method", "request_"), [
    ("channel_emulator", "/diffsem.v1.ChannelEmulator/Send",
     ch_pb.SendRequest(frames=[frame_pb2.Frame(symbols=common_pb2.Tensor(data=b"\0" * OVERSIZED))])),
    ("transmitter", "/diffsem.v1.Transmitter/Transmit",
     transmitter_pb2.TransmitRequest(images=common_pb2.Tensor(data=b"\0" * OVERSIZED))),
    ("receiver", "/diffsem.v1.Receiver/Decode",
     receiver_pb2.DecodeRequest(frames=[frame_pb2.ReceivedFrame(link="x" * OVERSIZED)])),
    ("eve", "/diffsem.v1.Eavesdropper/Attack",
     eavesdropper_pb2.AttackRequest(frames=[frame_pb2.ReceivedFrame(link="x" * OVERSIZED)])),
])
def test_every_service_refuses_a_request_larger_than_its_rpcs_need(stack: LiveStack, service: str, method: str,
                                                                    request_: Any) -> None:
    token = auth.token(stack.credential(auth.EAVESDROPPER, ATTACKER), auth.EMULATOR_AUDIENCE)
    with grpc_channel(stack.address(service)) as ch:
        rpc = ch.unary_unary(method, request_serializer=type(request_).SerializeToString,
                             response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            rpc(request_, timeout=30, metadata=[(auth.METADATA_KEY, token)])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
