"""Many listeners on one channel emulator: does the legitimate link keep its rate, lose nothing, and does health
answer? (BENCHMARKS.md, "256 listeners on one emulator").

The emulator runs as its own process (``python -m channel_emulator``, authentication on). This process opens the
legitimate ``Listen`` stream, ``extra`` eavesdropper streams of which ``reading`` read every frame and the rest never
read a byte, then sends ``batches`` batches of ``batch`` frames (one ``Send`` every ``interval_ms``; 0 = back to back)
while it probes the health service. It reports the legitimate receive rate, frames the legitimate link lost, and
the slowest health answer. ``main`` measures 0 extra listeners and then ``extra``, in the same run::

    python benchmarks/listeners.py --extra 256 --reading 32 --batches 100 --batch 32 --interval-ms 50

``--curve`` measures, at each offered rate (the batch size at one ``Send`` every ``interval_ms``), 0 extra listeners,
then ``extra``, on one emulator, for each of ``--compare``: the eavesdroppers' fan-out on the emulator's own thread
(``thread``), in its worker process (``process``, the default), or the emulator of another source tree (a folder,
e.g. ``git archive bd1137c | tar -x -C /tmp/before``: the emulator before issue 20), ``--repeat`` times,
alternating, and prints each pair's ratio::

    python benchmarks/listeners.py --curve 80,160,320,640 --extra 256 --reading 8 --batches 200 --repeat 2 \
        --compare /tmp/before,thread,process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from protos.diffsem.v1 import channel_emulator_pb2 as pb  # noqa: E402
from protos.diffsem.v1 import channel_emulator_pb2_grpc as pb_grpc  # noqa: E402
from protos.diffsem.v1 import common_pb2, frame_pb2  # noqa: E402
from services_common import auth  # noqa: E402
from services_common.client import grpc_aio_channel  # noqa: E402
from services_common.tensors import to_proto  # noqa: E402

WARM_BATCHES = 10
LISTENERS_PER_CHANNEL = 64  # HTTP/2 streams per connection, well under the usual concurrent-stream limits


@dataclass
class Result:
    extra: int
    reading: int
    sent: int
    legit_received: int
    legit_lost: int
    legit_rate_fps: float
    health_max_ms: float
    health_p50_ms: float
    send_p99_ms: float
    wall_s: float


def start_emulator(folder: Path, fanout: str = "process") -> tuple[subprocess.Popen, str, bytes]:
    """The emulator as its own process; ``fanout``: ``process``, ``thread``, or a folder holding another source tree
    of the project (e.g. ``git archive`` of an older commit) whose emulator runs with its own defaults."""
    key = auth.init_dir(folder / "auth", [])
    port_file = folder / "emu.port.json"
    tree = ROOT if fanout in ("process", "thread") else Path(fanout)
    proc = subprocess.Popen([sys.executable, "-m", "channel_emulator", "--port", "0", "--port-file", str(port_file),
                             "--auth-key-file", str(folder / "auth" / "authority.key"), "--max-links", "2048",
                             *(["--fanout", fanout] if tree == ROOT else [])],
                            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{json.loads(port_file.read_text())['grpc']}", key


def batch_frames(b: int, start: int, k: int = 256) -> list[frame_pb2.Frame]:
    x = torch.randn(b, k, generator=torch.Generator().manual_seed(start))
    x = x / x.pow(2).mean(1, keepdim=True).sqrt()
    return [frame_pb2.Frame(message_id=f"m{start + i}", seq=start + i, symbols=to_proto(x[i]),
                            header=frame_pb2.PublicHeader(a=1.0, send_time=time.time())) for i in range(b)]


async def _read(call: grpc.aio.UnaryStreamCall, got: list[float]) -> None:
    try:
        async for _ in call:
            got.append(time.perf_counter())
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass


async def _health(address: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with grpc.aio.insecure_channel(address) as ch:  # health stays open: no credential
        stub = health_pb2_grpc.HealthStub(ch)
        while not stop.is_set():
            t0 = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(0.05)


async def _attached(control: pb_grpc.ChannelEmulatorStub, n: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = await control.GetState(pb.GetStateRequest(), timeout=10)
        if sum(lk.attached for lk in state.links) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(lk.attached for lk in state.links)} of {n} listeners attached")
        await asyncio.sleep(0.1)


async def _phase(address: str, tx: pb_grpc.ChannelEmulatorStub, control: pb_grpc.ChannelEmulatorStub,
                 legit_got: list[float], extra: int, reading: int, batches: int, batch: int,
                 interval_ms: float) -> Result:
    """Send ``batches`` batches and measure the legitimate link while ``extra`` eavesdroppers listen."""
    before = len(legit_got)
    dropped = (await control.GetState(pb.GetStateRequest(link="receiver"), timeout=10)).links[0].dropped_queue
    stop, health = asyncio.Event(), []
    probe = asyncio.create_task(_health(address, stop, health))
    payloads = [batch_frames(batch, before + i * batch) for i in range(batches)]
    sends = []
    t0 = time.perf_counter()
    for i, frames in enumerate(payloads):
        s0 = time.perf_counter()
        await tx.Send(pb.SendRequest(frames=frames), timeout=30)
        sends.append(time.perf_counter() - s0)
        if interval_ms:
            await asyncio.sleep(max(0.0, t0 + (i + 1) * interval_ms / 1000 - time.perf_counter()))
    sent = batches * batch
    deadline = time.monotonic() + 60
    while len(legit_got) < before + sent and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    got = len(legit_got) - before
    wall = (legit_got[-1] if got else time.perf_counter()) - t0
    state = (await control.GetState(pb.GetStateRequest(link="receiver"), timeout=10)).links[0]
    stop.set()
    await probe
    health.sort()
    sends.sort()
    return Result(extra, min(reading, extra), sent, got, sent - got + state.dropped_queue - dropped, got / wall,
                  health[-1] * 1000, health[len(health) // 2] * 1000, sends[int(0.99 * (len(sends) - 1))] * 1000, wall)


async def run(address: str, key: bytes, phases: list[tuple[int, int]], batches: int, batch: int,
              interval_ms: float) -> list[Result]:
    """Measurements against one running emulator (see the module docstring), one per phase ``(extra, reading)``:
    before each, eavesdropper streams are opened up to ``extra`` (phases only add listeners), the first ``reading``
    of them read."""
    channels = [grpc_aio_channel(address, auth.issue(key, auth.RECEIVER, "receiver"))]
    legit_got: list[float] = []
    tasks = [asyncio.create_task(_read(pb_grpc.ChannelEmulatorStub(channels[0]).Listen(
        pb.ListenRequest(role=common_pb2.ROLE_LEGITIMATE, name="receiver")), legit_got))]
    idle_calls = []
    control = pb_grpc.ChannelEmulatorStub(ch_ctl := grpc_aio_channel(address, auth.issue(key, auth.CONTROL, "control")))
    tx = pb_grpc.ChannelEmulatorStub(ch_tx := grpc_aio_channel(address, auth.issue(key, auth.TRANSMITTER, "transmitter")))
    await _attached(control, 1)
    for i in range(WARM_BATCHES):  # the emulator's first batches pay its warm-up: not measured
        await tx.Send(pb.SendRequest(frames=batch_frames(batch, 1_000_000_000 + i * batch)), timeout=30)
    while len(legit_got) < WARM_BATCHES * batch:
        await asyncio.sleep(0.01)
    del legit_got[:]
    results = []
    for extra, reading in phases:
        names = [f"eve{i:04d}" for i in range(len(channels) - 1, extra)]
        if names:
            await control.Configure(pb.ConfigureRequest(links=[  # the operator sizes the eavesdroppers' queues
                pb.LinkUpdate(name=name, role=common_pb2.ROLE_EAVESDROPPER, settings=pb.LinkSettings(queue_size=64))
                for name in names]), timeout=30)
        for i, name in enumerate(names, start=len(channels) - 1):
            ch = grpc_aio_channel(address, auth.issue(key, auth.EAVESDROPPER, name))  # one connection per credential
            channels.append(ch)
            call = pb_grpc.ChannelEmulatorStub(ch).Listen(pb.ListenRequest(role=common_pb2.ROLE_EAVESDROPPER, name=name))
            if i < reading:
                tasks.append(asyncio.create_task(_read(call, [])))
            else:
                idle_calls.append(call)  # opened, never read
        await _attached(control, len(channels))
        results.append(await _phase(address, tx, control, legit_got, extra, reading, batches, batch, interval_ms))
    for t in tasks:
        t.cancel()
    for call in idle_calls:
        call.cancel()
    for ch in (*channels, ch_ctl, ch_tx):
        await ch.close()
    return results


def measure_phases(phases: list[tuple[int, int]], batches: int, batch: int, interval_ms: float,
                   fanout: str = "process") -> list[Result]:
    """:func:`run` against an emulator started for it (its own process) and stopped after."""
    with tempfile.TemporaryDirectory(prefix="diffsem-listeners-") as d:
        proc, address, key = start_emulator(Path(d), fanout)
        try:
            return asyncio.run(run(address, key, phases, batches, batch, interval_ms))
        finally:
            proc.terminate()
            proc.wait(20)


def measure(extra: int, reading: int, batches: int, batch: int, interval_ms: float,
            fanout: str = "process") -> Result:
    """One measurement on a fresh emulator."""
    return measure_phases([(extra, reading)], batches, batch, interval_ms, fanout)[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--extra", type=int, default=256, help="eavesdropper listeners besides the legitimate one")
    p.add_argument("--reading", type=int, default=32, help="how many of them read their frames (the rest never do)")
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--batch", type=int, default=32, help="frames per Send (k = 256)")
    p.add_argument("--interval-ms", type=float, default=50.0, help="one Send every this many ms (0: back to back)")
    p.add_argument("--fanout", choices=("process", "thread"), default="process")
    p.add_argument("--curve", default="", help="offered rates in frames/s, comma-separated (see the docstring)")
    p.add_argument("--repeat", type=int, default=1, help="--curve: measurements per rate and fan-out")
    p.add_argument("--compare", type=lambda t: t.split(","), default=["thread", "process"],
                   help="--curve: fan-outs to compare (process, thread, or the folder of another source tree)")
    args = p.parse_args(argv)
    torch.manual_seed(secrets.randbits(32))
    if args.curve:
        return curve([float(r) for r in args.curve.split(",")], args)
    base = measure(0, 0, args.batches, args.batch, args.interval_ms)
    many = measure(args.extra, args.reading, args.batches, args.batch, args.interval_ms, args.fanout)
    for r in (base, many):
        print(json.dumps(asdict(r)))
    print(f"legitimate rate ratio {many.legit_rate_fps / base.legit_rate_fps:.3f} "
          f"({many.legit_rate_fps:.0f} vs {base.legit_rate_fps:.0f} frames/s), legitimate frames lost "
          f"{many.legit_lost}, slowest health answer {many.health_max_ms:.1f} ms")


def _ratios(pairs: list[list[Result]]) -> str:
    return ", ".join(f"{m.legit_rate_fps / b.legit_rate_fps:.2f} ({b.legit_rate_fps:.0f} -> {m.legit_rate_fps:.0f}, "
                     f"lost {m.legit_lost})" for b, m in pairs)


def curve(rates: list[float], args: argparse.Namespace) -> None:
    """The ``--curve`` table: per offered rate, the legitimate rate with ``extra`` listeners against none, each pair
    on one emulator, with the fan-out on the emulator's thread and in its worker process."""
    print(f"| offered frames/s | {' | '.join(f'{f}: ratio (0 -> {args.extra} extra, frames/s; lost)' for f in args.compare)} "
          f"| slowest health answer, {' / '.join(args.compare)} |")
    print("|---" * (len(args.compare) + 2) + "|")
    for rate in rates:
        batch = max(1, round(rate * args.interval_ms / 1000))
        rows: dict[str, list[list[Result]]] = {fanout: [] for fanout in args.compare}
        for _ in range(args.repeat):
            for fanout in args.compare:
                pair = measure_phases([(0, 0), (args.extra, args.reading)], args.batches, batch, args.interval_ms,
                                      fanout)
                rows[fanout].append(pair)
                print(fanout, json.dumps([asdict(r) for r in pair]), file=sys.stderr, flush=True)
        health = ", ".join(" / ".join(f"{pairs[1].health_max_ms:.0f}" for pairs in rep) + " ms"
                           for rep in zip(*rows.values(), strict=True))
        print(f"| {batch * 1000 / args.interval_ms:.0f} | {' | '.join(_ratios(r) for r in rows.values())} "
              f"| {health} |", flush=True)


if __name__ == "__main__":
    main()
