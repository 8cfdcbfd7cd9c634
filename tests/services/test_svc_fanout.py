"""The eavesdropper fan-out in its worker process (channel_emulator/fanout.py): the links draw there what the core
draws, the same whether their listener keeps up or not, and a killed worker is restarted while the legitimate link
goes on and the eavesdroppers' frames of that window are counted as dropped.

The emulator runs in this process with ``fanout="process"`` (the service's default); batches are synchronised on
``Fanout.join`` (every queued batch reached every link or was counted), never on sleeps."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
import torch

from channel_emulator.fanout import ProcessDrawer
from channel_emulator.links import Subscriber
from channel_emulator.server import Emulator
from diffsem.config import LinkConfig
from diffsem.phy import Link
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import common_pb2, frame_pb2
from services_common.tensors import to_numpy, to_proto

LEGIT, EVE = common_pb2.ROLE_LEGITIMATE, common_pb2.ROLE_EAVESDROPPER
B = 16


@pytest.fixture()
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A Subscriber wakes its reader on a loop; here the test reads the queue itself, so the loop never runs."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    e = Emulator("receiver", pb.LinkSettings(snr_db=10.0), pb.LinkSettings(snr_db=5.0), seed=7, fanout="process")
    yield e
    e.close()


def batch(start: int) -> tuple[torch.Tensor, list[frame_pb2.Frame]]:
    x = torch.randn(B, 256, generator=torch.Generator().manual_seed(start))
    x = x / x.pow(2).mean(1, keepdim=True).sqrt()
    return x, [frame_pb2.Frame(message_id=f"m{start + i}", seq=start + i, symbols=to_proto(x[i]),
                               header=frame_pb2.PublicHeader(a=1.0)) for i in range(B)]


def listen(e: Emulator, loop: asyncio.AbstractEventLoop, role: int, name: str, queue_size: int = 1024) -> Subscriber:
    e.configure([pb.LinkUpdate(name=name, role=role, settings=pb.LinkSettings(queue_size=queue_size, seed=99))])
    return e.subscribe(role, name, loop)[1]


def taken(sub: Subscriber) -> torch.Tensor:
    """The latents queued for a listener, read off its queue (as its stream would)."""
    rows = [torch.from_numpy(to_numpy(rf.frame.symbols)) for _, rf in sub.items]
    sub.items.clear()
    return torch.stack(rows)


def test_the_worker_draws_what_the_core_draws_whether_or_not_the_listener_keeps_up(
        emu: Emulator, loop: asyncio.AbstractEventLoop) -> None:
    assert isinstance(emu.fanout.drawer, ProcessDrawer)
    fast, slow = listen(emu, loop, EVE, "fast"), listen(emu, loop, EVE, "slow", queue_size=4)  # same seed, one never reads
    core = Link(LinkConfig(snr_db=5.0, seed=99), 256)  # the core's link, as the offline evaluator runs it
    xs = [batch(i * B) for i in range(3)]
    for _, fs in xs[:2]:
        emu.send(fs)
    emu.fanout.join()
    want = [core.carry(x, 5.0).latent for x, _ in xs]
    assert torch.equal(taken(fast), torch.cat(want[:2]))
    assert torch.equal(taken(slow), want[0][:4])  # 4 fitted, the rest of both batches dropped, counted
    assert emu.links["slow"].counts["dropped_queue"] == 2 * B - 4
    emu.send(xs[2][1])
    emu.fanout.join()
    assert torch.equal(taken(slow), want[2][:4])  # its draws went on through the frames it dropped
    assert torch.equal(taken(fast), want[2])


def test_a_killed_worker_is_restarted_the_legitimate_link_goes_on_and_the_window_is_counted(
        emu: Emulator, loop: asyncio.AbstractEventLoop) -> None:
    legit, eve = listen(emu, loop, LEGIT, "receiver"), listen(emu, loop, EVE, "eve")
    drawer = emu.fanout.drawer
    assert isinstance(drawer, ProcessDrawer)
    emu.send(batch(0)[1])
    emu.fanout.join()
    assert len(eve.items) == B
    old = drawer.proc.pid
    os.kill(old, signal.SIGKILL)
    drawer.proc.join(10)
    emu.send(batch(B)[1])  # meets the dead worker
    assert len(legit.items) == 2 * B  # the legitimate link's frames were queued in Send itself
    emu.fanout.join()
    counts = emu.links["eve"].counts
    assert counts["frames_in"] == 2 * B and counts["dropped_queue"] == B and len(eve.items) == B
    assert drawer.restarts == 1 and drawer.proc.pid != old and drawer.proc.is_alive()
    emu.send(batch(2 * B)[1])
    emu.fanout.join()
    assert len(eve.items) == 2 * B and counts["delivered"] + counts["dropped_queue"] + len(eve.items) == 3 * B
    assert [rf.frame.seq for _, rf in legit.items] == list(range(3 * B))
    assert emu.links["receiver"].counts["dropped_queue"] == 0
