"""The channel emulator as a real gRPC server (in this process): links, traces, queues, seeds, CSI, the link schema.

Every call carries a credential of the role it needs; the emulator's clock is injected (:class:`FakeClock`), so
trace steps and link expiry are reached by advancing it, never by sleeping.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch
from svc_helpers import wait_until

from channel_emulator import schema
from channel_emulator.server import ChannelEmulatorServicer, Emulator
from channel_emulator.traces import load_trace
from diffsem.config import LinkConfig
from diffsem.phy import Link
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common import auth
from services_common.client import grpc_channel
from services_common.errors import BadRequest
from services_common.frames import symbols_matrix, symbols_of
from services_common.server import ServiceHost, host_for
from services_common.tensors import to_numpy, to_proto

LEGIT, EVE = common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER
KEY = secrets.token_bytes(auth.KEY_BYTES)


class FakeClock:
    """The emulator's clock in tests: time moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Emu:
    """A running emulator: its core, its clock, its address and stubs per caller."""

    emulator: Emulator
    clock: FakeClock
    address: str
    channels: list[grpc.Channel]

    def stub(self, role: str | None = "control", name: str | None = None) -> pb_grpc.ChannelEmulatorStub:
        """A stub whose calls carry the ``role`` credential named ``name`` (None: no credential)."""
        cred = auth.issue(KEY, role, name or role) if role else None
        ch = grpc_channel(self.address, cred)
        self.channels.append(ch)
        return pb_grpc.ChannelEmulatorStub(ch)

    @property
    def control(self) -> pb_grpc.ChannelEmulatorStub:
        return self.stub()

    @property
    def tx(self) -> pb_grpc.ChannelEmulatorStub:
        return self.stub("transmitter")

    def links(self) -> dict[str, pb.LinkState]:
        return {lk.name: lk for lk in self.control.GetState(pb.GetStateRequest(), timeout=5).links}


def start_emulator(key: bytes | None = KEY, tmp: Path | None = None, phy: pb.LinkSettings | None = None,
                   **kw: object) -> tuple[Emu, ServiceHost]:
    """The receiver at 10 dB, new eavesdropper links at 5 dB, every link with ``phy``'s settings (default flat)."""
    clock = FakeClock()
    legit, eve = pb.LinkSettings(snr_db=10.0), pb.LinkSettings(snr_db=5.0)
    for settings in (legit, eve):
        settings.MergeFrom(phy or pb.LinkSettings())
    emulator = Emulator("receiver", legit, eve, seed=7, clock=clock, **kw)
    verifier = auth.Verifier(key, audience=auth.EMULATOR_AUDIENCE)
    host = host_for(ChannelEmulatorServicer(emulator, verifier), verifier)
    port = host.start()
    host.set_serving(True)
    return Emu(emulator, clock, f"127.0.0.1:{port}", []), host


@pytest.fixture()
def emu(tmp_path: Path) -> Iterator[Emu]:
    (tmp_path / "traces").mkdir()
    e, host = start_emulator(trace_dir=tmp_path / "traces")
    yield e
    for ch in e.channels:
        ch.close()
    host.stop(0.5)


def frames(n: int, k: int = 256, seed: int = 0, start: int = 0) -> tuple[torch.Tensor, list[frame_pb2.Frame]]:
    x = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    x = x / x.pow(2).mean(1, keepdim=True).sqrt()
    return x, [frame_pb2.Frame(message_id=f"m{start + i}", seq=start + i, symbols=to_proto(x[i]),
                               header=frame_pb2.PublicHeader(a=1.0, send_time=time.time())) for i in range(n)]


class Reader:
    """Reads a Listen stream on a thread, with the credential of its role and name. ``settings``: the operator's
    settings of the eavesdropper link, configured (created) by the control role before it attaches; a listener
    has no say in its link (docs/design.md §8)."""

    def __init__(self, e: Emu, role: int, name: str, cred_name: str | None = None, **settings: object):
        req = pb.ListenRequest(role=role, name=name)
        if settings:
            e.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(
                name=name, role=EVE, settings=pb.LinkSettings(**settings))]), timeout=10)
        stub = e.stub("receiver" if role == LEGIT else "eavesdropper", cred_name or name)
        self.call = stub.Listen(req, timeout=60)
        self.got: list[frame_pb2.ReceivedFrame] = []
        self.ended: grpc.StatusCode | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for rf in self.call:
                self.got.append(rf)
        except grpc.RpcError as exc:
            self.ended = exc.code()
        else:
            self.ended = grpc.StatusCode.OK

    def wait(self, n: int, timeout: float = 10.0) -> None:
        wait_until(lambda: len(self.got) >= n or self.ended, timeout, f"{n} frames")
        assert len(self.got) >= n, (len(self.got), self.ended)


def attached(e: Emu, name: str) -> None:
    wait_until(lambda: e.links().get(name, pb.LinkState()).attached, 5, f"{name} attached")


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call() if callable(call) else None  # type: ignore[operator]
    return err.value.code()


def test_seeded_links_give_the_core_channel_output(emu: Emu) -> None:
    emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        seed=123))]), timeout=5)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    x, fs = frames(8)
    emu.tx.Send(pb.SendRequest(frames=fs), timeout=5)
    rx.wait(8)
    want = Link(LinkConfig(snr_db=10.0, seed=123), 256).carry(x)  # the core's link, as the offline evaluator runs it
    got = torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in rx.got])
    assert torch.equal(got, want.latent)
    assert [rf.sigma2 for rf in rx.got] == pytest.approx([0.1] * 8)
    assert [rf.frame.seq for rf in rx.got] == list(range(8))


def test_slow_listener_drops_on_its_own_link_and_never_blocks_the_others(emu: Emu) -> None:
    fast = Reader(emu, LEGIT, "receiver")
    emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(
        name="slow", role=EVE, settings=pb.LinkSettings(queue_size=4))]), timeout=10)  # the operator's bound
    slow_call = emu.stub("eavesdropper", "slow").Listen(
        pb.ListenRequest(role=EVE, name="slow"), timeout=60)  # never read
    attached(emu, "receiver")
    attached(emu, "slow")
    n = 600
    started = time.monotonic()
    for i in range(0, n, 50):
        emu.tx.Send(pb.SendRequest(frames=frames(50, start=i)[1]), timeout=5)
    assert time.monotonic() - started < 5
    fast.wait(n)
    state = emu.links()
    assert state["receiver"].dropped_queue == 0 and state["receiver"].delivered == n
    assert state["slow"].dropped_queue > 0
    assert state["slow"].delivered + state["slow"].dropped_queue + state["slow"].queue_depth <= n
    slow_call.cancel()


def test_the_same_credential_reconnects_and_a_cancelled_listener_detaches(emu: Emu) -> None:
    first = Reader(emu, EVE, "eve")
    attached(emu, "eve")
    second = Reader(emu, EVE, "eve")  # the same credential: a reconnect replaces the old stream
    wait_until(lambda: first.ended is not None, 5, "the old stream to end")
    emu.tx.Send(pb.SendRequest(frames=frames(3)[1]), timeout=5)
    second.wait(3)
    assert len(first.got) == 0
    second.call.cancel()
    wait_until(lambda: not emu.links()["eve"].attached, 5, "eve detached")
    emu.tx.Send(pb.SendRequest(frames=frames(2)[1]), timeout=5)
    wait_until(lambda: emu.links()["eve"].no_listener == 2, 5, "2 frames counted without a listener")


def test_a_reconnect_is_recognised_by_principal_not_by_its_token(emu: Emu) -> None:
    """Tokens change with every call (each names its expiry): two different tokens of eve's are one principal."""
    cred = auth.issue(KEY, auth.EAVESDROPPER, "eve")
    req = pb.ListenRequest(role=EVE, name="eve")
    streams = []
    for minted_at in (time.time() - 120, time.time()):
        token = auth.token(cred, auth.EMULATOR_AUDIENCE, now=minted_at)
        ch = grpc_channel(emu.address)  # no interceptor: the test presents the token it minted
        emu.channels.append(ch)
        streams.append(pb_grpc.ChannelEmulatorStub(ch).Listen(req, timeout=30,
                                                              metadata=[(auth.METADATA_KEY, token)]))
        wait_until(lambda: emu.links().get("eve", pb.LinkState()).attached, 5, "eve attached")
    assert list(streams[0]) == []  # the first stream ended cleanly: replaced, not refused
    emu.tx.Send(pb.SendRequest(frames=frames(2)[1]), timeout=5)
    assert [next(streams[1]).frame.seq for _ in range(2)] == [0, 1]  # the reconnect gets the frames


def test_without_authentication_an_attached_name_cannot_be_taken_over() -> None:
    e, host = start_emulator(key=None)
    try:
        first = Reader(e, EVE, "eve")
        attached(e, "eve")
        stream = e.stub(None).Listen(pb.ListenRequest(role=EVE, name="eve"), timeout=5)
        assert code_of(lambda: next(stream)) == grpc.StatusCode.ALREADY_EXISTS
        e.stub(None).Send(pb.SendRequest(frames=frames(2)[1]), timeout=5)
        first.wait(2)  # the first listener still gets its frames
    finally:
        host.stop(0.5)


def test_configure_is_all_or_nothing_and_names_the_bad_field(emu: Emu) -> None:
    updates = [pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(snr_db=0.0)),
               pb.LinkUpdate(name="eve", role=EVE, settings=pb.LinkSettings(erasure_prob=2.0))]
    with pytest.raises(grpc.RpcError) as err:
        emu.control.Configure(pb.ConfigureRequest(links=updates), timeout=5)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "erasure_prob=2.0" in err.value.details()
    assert [(n, lk.snr_db) for n, lk in emu.links().items()] == [("receiver", 10.0)]
    for settings, code in ((pb.LinkSettings(snr_db=float("inf")), grpc.StatusCode.INVALID_ARGUMENT),
                           (pb.LinkSettings(fading="awful"), grpc.StatusCode.INVALID_ARGUMENT),
                           (pb.LinkSettings(coherence_frames=0), grpc.StatusCode.OUT_OF_RANGE),
                           (pb.LinkSettings(trace=pb.SnrTrace()), grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as err:
            emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=settings)]),
                                  timeout=5)
        assert err.value.code() == code, err.value.details()
    stream = emu.stub("receiver", "someone-else").Listen(pb.ListenRequest(role=LEGIT, name="someone-else"), timeout=5)
    assert code_of(lambda: next(stream)) == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_link_is_not_found_and_validate_only_applies_nothing(emu: Emu) -> None:
    for update in (pb.LinkUpdate(name="nobody", settings=pb.LinkSettings(snr_db=3)),
                   pb.LinkUpdate(name="nobody", remove=True)):
        with pytest.raises(grpc.RpcError) as err:
            emu.control.Configure(pb.ConfigureRequest(links=[
                pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(snr_db=1)), update]), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nobody" in err.value.details()
    assert list(emu.links()) == ["receiver"] and emu.links()["receiver"].snr_db == 10.0
    ok = [pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(snr_db=1)),
          pb.LinkUpdate(name="eve", role=EVE, settings=pb.LinkSettings(snr_db=2))]
    emu.control.Configure(pb.ConfigureRequest(links=ok, validate_only=True), timeout=5)
    assert list(emu.links()) == ["receiver"] and emu.links()["receiver"].snr_db == 10.0
    emu.control.Configure(pb.ConfigureRequest(links=ok), timeout=5)
    assert {n: lk.snr_db for n, lk in emu.links().items()} == {"receiver": 1.0, "eve": 2.0}


def test_every_link_setting_is_set_on_a_link_and_the_queue_bound_states_its_memory(emu: Emu) -> None:
    state = emu.links()["receiver"]
    # every setting but the offset (set only while following) and the seed (never reported: issue 19)
    assert all(schema.is_set(state.settings, f) for f in schema.FIELDS if f.name not in ("snr_offset_db", "seed"))
    assert not state.settings.HasField("seed") and state.seeded  # this emulator was given seed=7
    with pytest.raises(grpc.RpcError) as err:
        emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
            queue_size=1 << 20))]), timeout=5)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert "GiB per link" in err.value.details() and "MiB" in err.value.details(), err.value.details()


def test_links_past_the_limit_are_resource_exhausted_and_detached_links_expire(tmp_path: Path) -> None:
    e, host = start_emulator(max_links=3, grace_s=60.0)
    try:
        a, b = Reader(e, EVE, "a"), Reader(e, EVE, "b")
        attached(e, "a")
        attached(e, "b")
        stream = e.stub("eavesdropper", "c").Listen(pb.ListenRequest(role=EVE, name="c"), timeout=5)
        assert code_of(lambda: next(stream)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        a.call.cancel()
        wait_until(lambda: not e.links()["a"].attached, 5, "a detached")
        e.clock.advance(59.0)
        assert "a" in e.links()  # still within the grace period
        e.clock.advance(1.0)
        assert set(e.links()) == {"receiver", "b"}
        c = Reader(e, EVE, "c")  # room again
        attached(e, "c")
        assert b.ended is None and c.ended is None
    finally:
        host.stop(0.5)


@pytest.mark.parametrize("rpc,allowed", [
    ("Send", {"transmitter"}), ("Feedback", {"transmitter"}), ("Configure", {"control"}), ("GetState", {"control"}),
    ("Listen-legit", {"receiver"}), ("Listen-eve", {"eavesdropper:eve"})])
def test_each_rpc_only_for_its_role(emu: Emu, rpc: str, allowed: set[str]) -> None:
    """From the attacker's position: every other role's credential, a forged one and none are refused."""
    forged = auth.issue(secrets.token_bytes(auth.KEY_BYTES), "control", "control")
    callers = {"control": "control", "transmitter": "transmitter", "receiver": "receiver",
               "eavesdropper:eve": ("eavesdropper", "eve"), "eavesdropper:mallory": ("eavesdropper", "mallory")}
    calls = {
        "Send": lambda s: s.Send(pb.SendRequest(frames=frames(1)[1]), timeout=5),
        "Configure": lambda s: s.Configure(pb.ConfigureRequest(), timeout=5),
        "GetState": lambda s: s.GetState(pb.GetStateRequest(), timeout=5),
        "Feedback": lambda s: s.Feedback(pb.FeedbackRequest(frames=1), timeout=5),
        "Listen-legit": lambda s: s.Listen(pb.ListenRequest(role=LEGIT, name="receiver"), timeout=1).next(),
        "Listen-eve": lambda s: s.Listen(pb.ListenRequest(role=EVE, name="eve"), timeout=1).next(),
    }
    for who, cred in callers.items():
        stub = emu.stub(*cred) if isinstance(cred, tuple) else emu.stub(cred)
        try:
            calls[rpc](stub)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        if who in allowed:
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED), (who, code)  # a stream waits
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (who, code)
    for stub in (emu.stub(None), pb_grpc.ChannelEmulatorStub(grpc_channel(emu.address, forged))):
        with pytest.raises(grpc.RpcError) as err:
            calls[rpc](stub)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_loss_delay_and_deadline_flags(emu: Emu) -> None:
    emu.control.Configure(pb.ConfigureRequest(links=[
        pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(delay_ms=80.0, deadline_ms=40.0)),
        pb.LinkUpdate(name="lossy", role=EVE, settings=pb.LinkSettings(loss_prob=1.0))]), timeout=5)
    rx, lossy = Reader(emu, LEGIT, "receiver"), Reader(emu, EVE, "lossy")
    attached(emu, "receiver")
    attached(emu, "lossy")
    sent = time.time()
    emu.tx.Send(pb.SendRequest(frames=frames(4)[1]), timeout=5)
    rx.wait(4)
    lossy.wait(4)
    assert all(rf.late and rf.deliver_time - sent >= 0.079 for rf in rx.got)
    assert all(rf.dropped and not rf.frame.symbols.data for rf in lossy.got)
    state = emu.links()
    assert state["receiver"].late == 4 and state["lossy"].lost == 4


def sigma_c2(e: Emu) -> float:
    return e.control.GetState(pb.GetStateRequest(link="receiver"), timeout=5).links[0].sigma_c2


def test_csi_feedback_follows_a_trace_and_fading_blocks(emu: Emu) -> None:
    trace = pb.SnrTrace(points=[pb.TracePoint(t_s=0, snr_db=20), pb.TracePoint(t_s=0.5, snr_db=0)],
                        interp=pb.INTERP_STEP)
    emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        trace=trace))]), timeout=5)
    assert sigma_c2(emu) == pytest.approx(0.01)
    emu.clock.advance(0.25)
    assert sigma_c2(emu) == pytest.approx(0.01)
    emu.clock.advance(0.25)  # exactly the step (binary fractions: no rounding)
    assert sigma_c2(emu) == pytest.approx(1.0)
    emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        clear_trace=True, snr_db=10, fading="rayleigh", coherence_frames=5))]), timeout=5)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    emu.tx.Send(pb.SendRequest(frames=frames(5)[1]), timeout=5)
    rx.wait(5)
    gains = {(round(rf.gain_re, 6), round(rf.gain_im, 6)) for rf in rx.got}
    assert len(gains) == 1  # one gain per coherence block
    h2 = rx.got[0].gain_re ** 2 + rx.got[0].gain_im ** 2
    assert sigma_c2(emu) == pytest.approx(0.1 / h2, rel=1e-5) == pytest.approx(rx.got[0].sigma2, rel=1e-5)


@pytest.mark.parametrize("coherence", [1, 4])
def test_flat_fading_feedback_is_the_csi_of_the_frames_the_next_send_carries(emu: Emu, coherence: int) -> None:
    """Rayleigh, a new gain every frame or blocks of 4: the transmitter's CSI for B frames (``Feedback``) is N0/|h|^2
    of exactly the gains those B frames then meet, frame by frame, and the same the core's link gives offline."""
    emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        fading="rayleigh", coherence_frames=coherence, seed=77))]), timeout=5)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    offline = Link(LinkConfig(snr_db=10.0, fading="rayleigh", coherence_frames=coherence, seed=77), 256)
    for batch in range(3):
        x, fs = frames(10, seed=batch, start=10 * batch)
        fb = emu.tx.Feedback(pb.FeedbackRequest(frames=10), timeout=5)
        csi = offline.feedback(10)
        assert fb.phy == "flat" and torch.equal(torch.tensor(list(fb.frame_sigma_c2)), csi.sigma_c2)
        emu.tx.Send(pb.SendRequest(frames=fs), timeout=5)
        rx.wait(10 * (batch + 1))
        got = rx.got[10 * batch:]
        assert [rf.sigma2 for rf in got] == pytest.approx(list(fb.frame_sigma_c2), rel=1e-6)  # the fade it met
        want = offline.carry(x)
        assert torch.equal(torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in got]), want.latent)
    assert len({round(rf.gain_re, 6) for rf in rx.got}) == (30 if coherence == 1 else 8)  # ceil(30 / 4) blocks


def test_traces_by_name_or_content_never_by_path_and_errors_quote_no_file(emu: Emu, tmp_path: Path) -> None:
    (tmp_path / "traces" / "drop.csv").write_text("# interp=step\n0,20\n1,0\n")
    secret = tmp_path / "secret.csv"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "traces" / "link.csv").symlink_to(secret)

    def configure(tr: pb.SnrTrace) -> grpc.RpcError | None:
        try:
            emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
                trace=tr))]), timeout=5)
        except grpc.RpcError as exc:
            return exc
        return None

    assert configure(pb.SnrTrace(name="drop.csv")) is None
    emu.clock.advance(1.0)
    assert sigma_c2(emu) == pytest.approx(1.0)
    assert configure(pb.SnrTrace(csv="0,10\n")) is None and sigma_c2(emu) == pytest.approx(0.1)
    for tr in (pb.SnrTrace(name="../secret.csv"), pb.SnrTrace(name=str(secret)), pb.SnrTrace(name="/etc/passwd"),
               pb.SnrTrace(name="link.csv"), pb.SnrTrace(csv=secret.read_text()), pb.SnrTrace(csv="0,1\n" * 200_000)):
        err = configure(tr)
        assert err is not None and err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
        assert "root" not in err.details() and "bash" not in err.details(), err.details()
    assert sigma_c2(emu) == pytest.approx(0.1)  # nothing applied


def test_trace_files_and_interpolation(tmp_path: Path) -> None:
    js = tmp_path / "t.json"
    js.write_text(json.dumps({"interp": "linear", "loop": True, "points": [[0, 0], [10, 20]]}))
    tr = load_trace(js)
    assert tr.value(5) == pytest.approx(10.0) and tr.value(15) == pytest.approx(10.0)
    csv = tmp_path / "t.csv"
    csv.write_text("# interp=step\n0,5\n2,-5  # a drop\n")
    tr = load_trace(csv)
    assert (tr.value(1.9), tr.value(2.0), tr.value(99)) == (5.0, -5.0, -5.0)
    for bad in ("0,5\n0,6\n", "0,nan\n", "zero,5\n"):
        csv.write_text(bad)
        with pytest.raises(BadRequest):
            load_trace(csv)


def test_a_batch_of_frames_is_read_in_one_go_as_each_frame_would_be_and_a_bad_one_is_named() -> None:
    x, fs = frames(50)
    assert torch.equal(symbols_matrix(fs), torch.stack([symbols_of(f) for f in fs]))
    assert torch.equal(symbols_matrix(fs, 256), x)
    bad = list(fs)
    bad[7] = frame_pb2.Frame(message_id="nan7", symbols=to_proto(torch.full((256,), float("nan"))))
    with pytest.raises(BadRequest, match="frame nan7: symbols contain NaN or inf"):
        symbols_matrix(bad)
    bad[7] = frame_pb2.Frame(message_id="f64", symbols=to_proto(torch.zeros(256, dtype=torch.float64)))
    with pytest.raises(BadRequest, match="frame f64 symbols: dtype float64, expected float32"):
        symbols_matrix(bad)
    bad[7] = frames(1, k=128)[1][0]
    with pytest.raises(BadRequest, match=r"frames in one batch must share one length; got lengths \[128, 256\]"):
        symbols_matrix(bad)
    with pytest.raises(BadRequest, match=r"shape \(128,\), expected \(256,\)"):
        symbols_matrix(bad, 256)


@pytest.mark.parametrize("argv,offset,fixed", [
    ([], 0.0, None),                                   # by default at the legitimate link's SNR, whatever it is
    (["--eve-snr-offset-db", "-10"], -10.0, None),
    (["--eve-snr-db", "5"], None, 5.0),                # fixed instead
])
def test_new_eavesdropper_links_follow_the_legitimate_snr_unless_the_operator_fixes_it(
        argv: list[str], offset: float | None, fixed: float | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from channel_emulator.__main__ import make_servicer
    from channel_emulator.settings import SPEC

    monkeypatch.delenv("DIFFSEM_SCENARIO", raising=False)
    emu = make_servicer(SPEC.parse(["--snr-db", "20", *argv]), auth.Verifier(None)).emu
    try:
        eve = emu.eve_defaults
        assert (eve.snr_offset_db if eve.HasField("snr_offset_db") else None) == offset
        if fixed is not None:
            assert eve.snr_db == fixed
    finally:
        emu.close()
