"""The channel emulator as a real gRPC server (in this process): links, traces, queues, seeds, CSI."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch

from channel_emulator.links import LinkParams
from channel_emulator.server import ChannelEmulatorServicer, Emulator
from channel_emulator.traces import load_trace
from diffsem.channel import apply_link, draw_fading
from diffsem.config import LinkConfig
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.client import channel
from services_common.errors import BadRequest
from services_common.server import ServiceHost
from services_common.tensors import to_numpy, to_proto

LEGIT, EVE = common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER


@pytest.fixture()
def emu() -> Iterator[tuple[pb_grpc.ChannelEmulatorStub, Emulator]]:
    emulator = Emulator("receiver", LinkParams(seed=0, snr_db=10.0), LinkParams(seed=0, snr_db=5.0), seed=7)
    host = ServiceHost([pb.DESCRIPTOR.services_by_name["ChannelEmulator"].full_name])
    host.add(pb_grpc.add_ChannelEmulatorServicer_to_server, ChannelEmulatorServicer(emulator))
    port = host.start()
    host.set_serving(True)
    ch = channel(f"127.0.0.1:{port}")
    yield pb_grpc.ChannelEmulatorStub(ch), emulator
    ch.close()
    host.stop(0.5)


def frames(n: int, k: int = 256, seed: int = 0, start: int = 0) -> tuple[torch.Tensor, list[frame_pb2.Frame]]:
    x = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    x = x / x.pow(2).mean(1, keepdim=True).sqrt()
    return x, [frame_pb2.Frame(message_id=f"m{start + i}", seq=start + i, symbols=to_proto(x[i]),
                               header=frame_pb2.PublicHeader(a=1.0, send_time=time.time())) for i in range(n)]


class Reader:
    """Reads a Listen stream on a thread."""

    def __init__(self, stub: pb_grpc.ChannelEmulatorStub, role: int, name: str, **defaults: object):
        req = pb.ListenRequest(role=role, name=name)
        if defaults:
            req.defaults.CopyFrom(pb.LinkSettings(**defaults))
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
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"got {len(self.got)} of {n} frames"
            time.sleep(0.01)


def attached(emulator: Emulator, name: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not (name in emulator.links and emulator.links[name].subscriber is not None):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_seeded_links_give_the_core_channel_output(emu: tuple) -> None:
    stub, emulator = emu
    stub.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(seed=123))]),
                   timeout=5)
    rx = Reader(stub, LEGIT, "receiver")
    attached(emulator, "receiver")
    x, fs = frames(8)
    stub.Send(pb.SendRequest(frames=fs), timeout=5)
    rx.wait(8)
    gen = torch.Generator().manual_seed(123)
    link = LinkConfig(snr_db=10.0)
    want = apply_link(x, link, gen, gain=draw_fading(8, link, gen))  # what the offline evaluator does
    got = torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in rx.got])
    assert torch.equal(got, want.latent)
    assert [rf.sigma2 for rf in rx.got] == pytest.approx([0.1] * 8)
    assert [rf.frame.seq for rf in rx.got] == list(range(8))


def test_slow_listener_drops_on_its_own_link_and_never_blocks_the_others(emu: tuple) -> None:
    stub, emulator = emu
    fast = Reader(stub, LEGIT, "receiver")
    slow_call = stub.Listen(pb.ListenRequest(role=EVE, name="slow", defaults=pb.LinkSettings(queue_size=4)),
                            timeout=60)  # never read
    attached(emulator, "receiver")
    attached(emulator, "slow")
    n = 600
    started = time.monotonic()
    for i in range(0, n, 50):
        stub.Send(pb.SendRequest(frames=frames(50, start=i)[1]), timeout=5)
    assert time.monotonic() - started < 5
    fast.wait(n)
    state = {lk.name: lk for lk in stub.GetState(pb.GetStateRequest(), timeout=5).links}
    assert state["receiver"].dropped_queue == 0 and state["receiver"].delivered == n
    assert state["slow"].dropped_queue > 0
    assert state["slow"].delivered + state["slow"].dropped_queue + state["slow"].queue_depth <= n
    slow_call.cancel()


def test_a_new_subscription_replaces_the_old_and_a_cancelled_one_detaches(emu: tuple) -> None:
    stub, emulator = emu
    first = Reader(stub, EVE, "eve")
    attached(emulator, "eve")
    second = Reader(stub, EVE, "eve")
    deadline = time.monotonic() + 5
    while first.ended is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stub.Send(pb.SendRequest(frames=frames(3)[1]), timeout=5)
    second.wait(3)
    assert len(first.got) == 0
    second.call.cancel()
    deadline = time.monotonic() + 5
    while stub.GetState(pb.GetStateRequest(link="eve"), timeout=5).links[0].attached:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stub.Send(pb.SendRequest(frames=frames(2)[1]), timeout=5)
    assert stub.GetState(pb.GetStateRequest(link="eve"), timeout=5).links[0].no_listener == 2


def test_configure_is_all_or_nothing_and_names_the_bad_field(emu: tuple) -> None:
    stub, _ = emu
    updates = [pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(snr_db=0.0)),
               pb.LinkUpdate(name="eve", settings=pb.LinkSettings(erasure_prob=2.0))]
    with pytest.raises(grpc.RpcError) as err:
        stub.Configure(pb.ConfigureRequest(links=updates), timeout=5)
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "erasure_prob=2.0" in err.value.details()
    state = stub.GetState(pb.GetStateRequest(), timeout=5)
    assert [(lk.name, lk.snr_db) for lk in state.links] == [("receiver", 10.0)]
    for settings, code in ((pb.LinkSettings(snr_db=float("inf")), grpc.StatusCode.INVALID_ARGUMENT),
                           (pb.LinkSettings(fading="awful"), grpc.StatusCode.INVALID_ARGUMENT),
                           (pb.LinkSettings(trace=pb.SnrTrace()), grpc.StatusCode.INVALID_ARGUMENT)):
        with pytest.raises(grpc.RpcError) as err:
            stub.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=settings)]), timeout=5)
        assert err.value.code() == code, err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.Listen(pb.ListenRequest(role=LEGIT, name="someone-else"), timeout=5).next()
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "legitimate link is 'receiver'" in err.value.details()


def test_loss_delay_and_deadline_flags(emu: tuple) -> None:
    stub, emulator = emu
    stub.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        delay_ms=80.0, deadline_ms=40.0)), pb.LinkUpdate(name="lossy", settings=pb.LinkSettings(loss_prob=1.0))]),
        timeout=5)
    rx, lossy = Reader(stub, LEGIT, "receiver"), Reader(stub, EVE, "lossy")
    attached(emulator, "receiver")
    attached(emulator, "lossy")
    sent = time.time()
    stub.Send(pb.SendRequest(frames=frames(4)[1]), timeout=5)
    rx.wait(4)
    lossy.wait(4)
    assert all(rf.late and rf.deliver_time - sent >= 0.079 for rf in rx.got)
    assert all(rf.dropped and not rf.frame.symbols.data for rf in lossy.got)
    state = {lk.name: lk for lk in stub.GetState(pb.GetStateRequest(), timeout=5).links}
    assert state["receiver"].late == 4 and state["lossy"].lost == 4


def test_csi_feedback_follows_a_trace_and_fading_blocks(emu: tuple, tmp_path: Path) -> None:
    stub, emulator = emu
    trace = pb.SnrTrace(points=[pb.TracePoint(t_s=0, snr_db=20), pb.TracePoint(t_s=0.3, snr_db=0)],
                        interp=pb.INTERP_STEP)
    stub.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(trace=trace))]),
                   timeout=5)
    assert stub.GetState(pb.GetStateRequest(link="receiver"), timeout=5).links[0].sigma_c2 == pytest.approx(0.01)
    time.sleep(0.35)
    assert stub.GetState(pb.GetStateRequest(link="receiver"), timeout=5).links[0].sigma_c2 == pytest.approx(1.0)
    stub.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="receiver", settings=pb.LinkSettings(
        clear_trace=True, snr_db=10, fading="rayleigh", coherence_frames=5))]), timeout=5)
    rx = Reader(stub, LEGIT, "receiver")
    attached(emulator, "receiver")
    stub.Send(pb.SendRequest(frames=frames(5)[1]), timeout=5)
    rx.wait(5)
    gains = {(round(rf.gain_re, 6), round(rf.gain_im, 6)) for rf in rx.got}
    assert len(gains) == 1  # one gain per coherence block
    lk = stub.GetState(pb.GetStateRequest(link="receiver"), timeout=5).links[0]
    h2 = rx.got[0].gain_re ** 2 + rx.got[0].gain_im ** 2
    assert lk.sigma_c2 == pytest.approx(0.1 / h2, rel=1e-5) == pytest.approx(rx.got[0].sigma2, rel=1e-5)


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
