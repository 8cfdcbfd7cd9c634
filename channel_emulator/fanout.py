"""The eavesdropper links' side of every ``Send``, drawn off the legitimate link's path.

``Send`` carries a batch over the legitimate link itself and hands it to :class:`Fanout`, which carries it over every
eavesdropper link with a listener, batch by batch in ``Send`` order, on its own thread. The channel draws (the core's
:meth:`diffsem.phy.Link.carry`, about 1.4 ms of Python per link and batch of 32 frames, so some 360 ms for 256 links)
run in a :class:`Drawer` that holds its own copy of each eavesdropper link's core ``Link``:

- ``process`` (the service's default): the drawer lives in a worker process, spawned and niced, so the draws hold
  neither the interpreter lock that serves the legitimate link nor, on a busy machine, the CPU before it. The batch
  goes over a pipe; what comes back is each link's :class:`~channel_emulator.links.Carried`, cut to the frames its
  listener has room for, so a listener that never reads costs its draws and nothing else. A worker that dies is
  restarted; the batch it held is counted as dropped (``dropped_queue``) on every attached eavesdropper link, the
  legitimate link never waits for it, and the new worker rebuilds each link from its settings and seed.
- ``thread``: the drawer runs on the fan-out thread (in-process use, the tests): the same code without the pipe.

Why a process and not one vectorised draw for all flat links: each link draws from its own generators (seeded, so a
seeded live run draws what the offline evaluator draws, link by link: docs/design.md §3, the link), and torch draws
from one generator per call, so "one randn of shape (L, B, k)" would change every eavesdropper's draws; the
per-link Python the draws cost is what a process moves off the legitimate path without touching them.

Every link's draws stay the same whether or not its listener keeps up: the whole batch is carried over every link
with a listener, and a link's settings changes reach the drawer in order between the same batches
(:attr:`EmulatedLink.updates`). When the fan-out falls ``FANOUT_BATCHES`` batches behind, eavesdropper links drop
the new batch (counted in ``dropped_queue``, ``no_listener`` without a listener), never the legitimate link.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import pickle
import queue
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Protocol

import numpy as np
import torch

from channel_emulator import antennas
from channel_emulator.links import Carried, EmulatedLink, carried, carry
from diffsem.config import LinkConfig
from diffsem.phy import Link
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import frame_pb2

log = logging.getLogger(__name__)
FANOUT_BATCHES = 64  # Send batches the fan-out may lag behind before eavesdropper links drop
WORKER_NICE = 10  # the worker yields the CPU to the legitimate path (and to the rest of a shared machine)


@dataclass
class Job:
    """One link's part of a batch: ``uid``, the drawer's name for the link; ``cfg``, its settings when the drawer
    does not hold it yet (else None); ``updates``, its settings changes since the last batch, in order; ``snr_db``,
    the batch's SNR on it; ``n``, the frames its listener has room for; ``antennas``, its antenna settings (receive
    antennas and correlation, used by multi-antenna batches)."""

    uid: int
    cfg: LinkConfig | None
    updates: list[tuple[LinkConfig, bool]]
    snr_db: float
    n: int
    antennas: pb.AntennaSettings = field(default_factory=pb.AntennaSettings)


class Drawer:
    """Copies of the eavesdropper links' core ``Link`` (by uid), carrying batches over them. ``k``: real values per
    frame. Runs wherever it is put: the worker process (:func:`worker_main`) or the fan-out thread."""

    def __init__(self, k: int):
        self.k = k
        self.links: dict[int, Link] = {}
        self.antennas: dict[int, antennas.AntennaLink] = {}  # each link's multi-antenna channel, from its seed

    def carry(self, x: torch.Tensor | antennas.Batch, jobs: list[Job], gone: list[int]) -> list[Carried | None]:
        """x (B, k), or a multi-antenna batch, over each job's link; None for a link whose draw failed (its batch is
        counted as dropped)."""
        for uid in gone:
            self.links.pop(uid, None)
            self.antennas.pop(uid, None)
        got: list[Carried | None] = []
        for job in jobs:
            try:
                if job.cfg is not None:
                    self.links[job.uid] = Link(job.cfg, self.k)
                    self.antennas[job.uid] = antennas.AntennaLink(job.cfg.seed)
                link = self.links[job.uid]
                for cfg, restart in job.updates:
                    link.update(cfg, restart)
                    if restart:
                        self.antennas[job.uid] = antennas.AntennaLink(cfg.seed)
                out = carry(link, self.antennas[job.uid], x, job.snr_db, job.antennas, legit=False)
                got.append(carried(out, job.n, isinstance(x, antennas.Batch)))
            except Exception:  # noqa: BLE001 - one link's failure must not cost the others their batch
                log.exception("fan-out: link %d failed to carry a batch", job.uid)
                got.append(None)
        return got

    def close(self) -> None:
        self.links.clear()


def worker_main(conn: Connection, k: int) -> None:
    """The fan-out worker process: a :class:`Drawer` answering ``(x, jobs, gone)`` requests on ``conn`` until the
    emulator closes it (or dies: the pipe ends)."""
    os.nice(WORKER_NICE)
    torch.set_num_threads(1)
    from diffsem.phy import load

    load()
    drawer = Drawer(k)
    while True:
        try:
            x, jobs, gone = pickle.loads(conn.recv_bytes())
            x = torch.from_numpy(x) if isinstance(x, np.ndarray) else x  # a multi-antenna batch comes whole
            conn.send_bytes(pickle.dumps(drawer.carry(x, jobs, gone), pickle.HIGHEST_PROTOCOL))
        except (EOFError, OSError):  # the emulator closed the pipe or died
            return


class WorkerDied(RuntimeError):
    """The fan-out worker process ended while it held a batch."""


class ProcessDrawer:
    """A :class:`Drawer` in a worker process (spawned: the emulator has threads and gRPC, which ``fork`` would
    copy half-way), fed over a pipe; plain pickles of numpy arrays and small tensors, no shared tensor storage, so
    a dead worker leaves nothing behind."""

    def __init__(self, k: int):
        self.k = k
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, self.k), name="diffsem-fanout", daemon=True)
        self.proc.start()
        child.close()  # only the worker holds its end, so its death ends the pipe

    def carry(self, x: torch.Tensor | antennas.Batch, jobs: list[Job], gone: list[int]) -> list[Carried | None]:
        try:
            payload = x.numpy() if isinstance(x, torch.Tensor) else x
            self._conn.send_bytes(pickle.dumps((payload, jobs, gone), pickle.HIGHEST_PROTOCOL))
            return pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            raise WorkerDied(f"the fan-out worker (pid {self.proc.pid}) ended: exit code {self.proc.exitcode}") from e

    def restart(self) -> None:
        """A new worker in place of one that died (it holds no links: the fan-out sends each one's settings)."""
        self.close()
        self.restarts += 1
        self._start()

    def close(self) -> None:
        self._conn.close()  # the worker reads the end of the pipe and returns
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class _Drawer(Protocol):
    def carry(self, x: torch.Tensor | antennas.Batch, jobs: list[Job], gone: list[int]) -> list[Carried | None]: ...

    def close(self) -> None: ...


# frames, x (or a multi-antenna batch), clock time, wall time, legit SNR
Batch = tuple[list[frame_pb2.Frame], torch.Tensor | antennas.Batch, float, float, float]


class Fanout:
    """The eavesdropper links' side of every ``Send`` (see the module docstring): ``links``, the emulator's links by
    name, guarded by ``lock``; ``k``, real values per frame; ``process``: draw in a worker process (else on the
    fan-out thread)."""

    def __init__(self, links: dict[str, EmulatedLink], lock: threading.RLock, k: int, process: bool):
        self.links, self.lock = links, lock
        self.drawer: _Drawer = ProcessDrawer(k) if process else Drawer(k)
        self.queue: queue.Queue[Batch | None] = queue.Queue(maxsize=FANOUT_BATCHES)
        self._held: dict[EmulatedLink, int] = {}  # links the drawer holds, with their uid
        self._uids = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="fanout", daemon=True)
        self._thread.start()

    def offer(self, batch: Batch) -> None:
        """Queue a batch (called under the emulator's lock); when the fan-out is behind, eavesdropper links drop it."""
        try:
            self.queue.put_nowait(batch)
        except queue.Full:
            self._drop([lk for lk in self.links.values() if not lk.legit], len(batch[0]), count_in=True)

    def join(self) -> None:
        """Wait until every queued batch reached every eavesdropper link (or was counted as dropped)."""
        self.queue.join()

    def close(self) -> None:
        """Stop after the batches queued, then the drawer."""
        self.queue.put(None)
        self._thread.join(30)
        self.drawer.close()

    @staticmethod
    def _drop(links: list[EmulatedLink], n: int, count_in: bool) -> None:
        for link in links:
            if count_in:
                link.counts["frames_in"] += n
            attached = link.subscriber is not None and not link.subscriber.closed
            link.counts["dropped_queue" if attached or not count_in else "no_listener"] += n

    def _jobs(self, n: int, now: float, legit_snr: float) -> tuple[list[EmulatedLink], list[Job], list[int]]:
        """Under the emulator's lock: the attached eavesdropper links with their jobs, and the uids of links gone."""
        gone = [self._held.pop(lk) for lk in [lk for lk in self._held if self.links.get(lk.name) is not lk]]
        links, jobs = [], []
        for link in self.links.values():
            if link.legit:
                continue
            link.counts["frames_in"] += n
            sub = link.subscriber
            if sub is None or sub.closed:  # not carried: a link without a listener does not draw
                link.counts["no_listener"] += n
                continue
            uid = self._held.get(link)
            if uid is None:  # new to the drawer: its settings now (it has drawn nothing yet)
                uid = self._held[link] = next(self._uids)
                cfg, updates = link.link.cfg, []
            else:
                cfg, updates = None, list(link.updates)
            link.updates.clear()
            links.append(link)
            # as in force for this batch: EmulatedLink.update replaces its settings, never changes them in place
            jobs.append(Job(uid, cfg, updates, link.snr_db(now, legit_snr), min(sub.space(), n),
                            link.settings.antennas))
        return links, jobs, gone

    def _batch(self, batch: Batch) -> None:
        frames, x, now, wall, legit_snr = batch
        with self.lock:
            links, jobs, gone = self._jobs(len(frames), now, legit_snr)
        if not jobs and not gone:
            return
        try:
            got = self.drawer.carry(x, jobs, gone)
        except WorkerDied as e:
            log.error("%s; its batch of %d frames is counted as dropped on %d eavesdropper links; restarting it",
                      e, len(frames), len(links))
            with self.lock:
                self._drop([lk for lk in links if self.links.get(lk.name) is lk], len(frames), count_in=False)
                self._held.clear()
            assert isinstance(self.drawer, ProcessDrawer)
            self.drawer.restart()
            return
        for link, job, one in zip(links, jobs, got, strict=True):
            with self.lock:  # per link, so a Send never waits for the whole fan-out's messages
                sub = link.subscriber
                if self.links.get(link.name) is not link or sub is None:
                    continue
                if one is None:
                    link.counts["dropped_queue"] += len(frames)
                    continue
                items = link.items(frames, one, job.snr_db, wall)
                sub.offer(items, len(frames) - len(items))

    def _loop(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                self._batch(batch)
            except Exception:  # noqa: BLE001 - one bad batch must not stop every eavesdropper link
                log.exception("fan-out of a batch failed")
            finally:
                self.queue.task_done()
        self.queue.task_done()


__all__ = ["FANOUT_BATCHES", "Drawer", "Fanout", "Job", "ProcessDrawer", "WorkerDied"]
