"""Sweeps split into cells and run by an executor: in this process (``local``, the default) or on a Ray cluster
(``ray``) (docs/design.md §11).

A :class:`Grid` names its cells, each a tuple of its grid coordinates (e.g. ``(snr_db, self_noise, t_star,
eve_offset_db, attack)``), and computes one cell's result, a JSON-able dict, from the cell alone. Every random draw
in a cell comes from generators seeded by (seed, role, *coordinates*) (docs/design.md §3, frame path) and
:func:`seed_cell` seeds torch's global generator from the coordinates too, so a cell's result does not depend on
which process computes it, in which order, or on how many workers there are: the local and the Ray executor give
bit-identical tables.

- **Resumable.** :class:`CellStore` writes each finished cell as one JSON file the moment it completes; a rerun with
  the same settings skips those cells, so an interrupted sweep, local or on Ray, resumes where it stopped. Every
  result goes through the same JSON round trip, so a resumed sweep writes exactly what an uninterrupted one would.
- **Failures.** A cell that fails is reported by its coordinates and rerun once; if it fails again the sweep stops
  with :class:`SweepError` naming every such cell (finished cells stay stored). A :class:`DiffSemError` (bad input,
  a missing file) would fail the same way again: it stops the sweep at once, as the one-line error it is.
- **Progress** is a tqdm bar over the cells on stderr.

A grid must be picklable (paths and options only): a Ray worker rebuilds the loaded models from it once per
process (:func:`process_cache`). So on a cluster of several hosts, every worker must see the checkpoints and data at
the same paths (a shared filesystem, or the same container image).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from diffsem.errors import ConfigError, DiffSemError
from diffsem.seeds import derive_seed

Cell = tuple[Any, ...]
T = TypeVar("T")
EXECUTORS = ("local", "ray")
RAY_CONNECT_TIMEOUT_S = 10.0  # an unreachable Ray address fails within this (the bound is 30 s)


class SweepError(DiffSemError):
    """A cell failed twice, or the executor could not start."""


class Grid(Protocol):
    """A sweep as cells. ``kind`` names the command; ``settings()`` is everything that decides a cell's value except
    the grid's own axes (the store refuses cells written under other settings). A grid whose cells differ much in
    cost may also have ``cost(cell) -> float``, a relative estimate: :func:`run_grid` then starts the costliest
    first, so that no worker is left with a long cell while the others idle."""

    kind: str

    def settings(self) -> dict[str, Any]: ...

    def cells(self) -> list[Cell]: ...

    def run_cell(self, cell: Cell) -> dict[str, Any]: ...


# ---- JSON: strict floats, and the one round trip every result takes ----------------------------------------------
def to_json(value: Any) -> Any:
    """Non-finite floats as the strings ``inf``, ``-inf`` and ``nan`` (strict JSON readers refuse ``Infinity``);
    tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


def from_json(value: Any) -> Any:
    """The inverse of :func:`to_json` (lists stay lists)."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(to_json(value), allow_nan=False, sort_keys=False)


def round_trip(value: Any) -> Any:
    return from_json(json.loads(_dumps(value)))


def cell_id(cell: Cell) -> str:
    """A file name for a cell: the SHA-256 of its JSON form, 20 hex digits."""
    return hashlib.sha256(_dumps(list(cell)).encode()).hexdigest()[:20]


def describe(grid: Grid, cell: Cell) -> str:
    """A cell's coordinates for a person, e.g. ``snr_db=20, self_noise=random, t_star=300``."""
    names = getattr(grid, "axes", None) or [f"#{i}" for i in range(len(cell))]
    return ", ".join(f"{n}={v}" for n, v in zip(names, cell, strict=False))


def seed_cell(seed: int, cell: Cell) -> None:
    """Seed torch's global generator from the cell's coordinates, for anything in a cell that draws from it (e.g.
    ancestral sampling with eta > 0): the draw then depends on the cell, never on what ran before it."""
    torch.manual_seed(derive_seed(seed, "cell", *cell))


_CACHE: dict[str, Any] = {}


def process_cache(key: str, build: Callable[[], T]) -> T:
    """``build()`` once per process and ``key``: a worker loads a grid's models once, for all its cells."""
    if key not in _CACHE:
        _CACHE.clear()  # one grid's models at a time: a long-lived worker does not pile them up
        _CACHE[key] = build()
    return _CACHE[key]


def settings_key(grid: Grid) -> str:
    return grid.kind + ":" + hashlib.sha256(_dumps(grid.settings()).encode()).hexdigest()


# ---- the store ---------------------------------------------------------------------------------------------------
class CellStore:
    """Finished cells of one grid, one JSON file each under ``folder`` (``<cell id>.json``), beside ``grid.json``
    (the grid's kind and settings). A folder written under other settings is refused, naming what differs."""

    def __init__(self, folder: Path, grid: Grid):
        self.folder = Path(folder)
        self.manifest = self.folder / "grid.json"
        self.mine = mine = round_trip({"kind": grid.kind, "settings": grid.settings()})
        if self.manifest.exists():
            theirs = from_json(json.loads(self.manifest.read_text()))
            if theirs != mine:
                a, b = theirs.get("settings", {}), mine["settings"]
                diff = sorted({k for k in {*a, *b} if a.get(k) != b.get(k)}) or ["kind"]
                raise ConfigError(f"{self.folder} holds cells of another sweep (it differs in {', '.join(diff)}); "
                                  "use another --out, or delete that folder to start over")

    def done(self) -> dict[Cell, dict[str, Any]]:
        out: dict[Cell, dict[str, Any]] = {}
        if not self.folder.is_dir():
            return out
        for path in sorted(self.folder.glob("*.json")):
            if path.name == "grid.json":
                continue
            try:
                data = from_json(json.loads(path.read_text()))
                out[tuple(data["cell"])] = data["result"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a file cut short by a crash: that cell simply runs again
        return out

    def save(self, cell: Cell, result: dict[str, Any]) -> None:
        """Store a finished cell (the folder and its grid.json are made with the first, so a sweep refused before
        any cell leaves nothing behind)."""
        if not self.manifest.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.manifest, json.dumps(to_json(self.mine), indent=2) + "\n")
        _write_atomic(self.folder / f"{cell_id(cell)}.json", _dumps({"cell": list(cell), "result": result}) + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---- executors ---------------------------------------------------------------------------------------------------
Outcome = dict[str, Any] | BaseException


class LocalExecutor:
    """Cells one after another in this process (the one-machine default)."""

    name = "local"

    def map_unordered(self, grid: Grid, cells: Sequence[Cell]) -> Iterator[tuple[Cell, Outcome]]:
        for cell in cells:
            try:
                yield cell, grid.run_cell(cell)
            except Exception as exc:  # noqa: BLE001 - reported by its cell and rerun once by run_grid
                yield cell, exc

    def close(self) -> None:
        pass


def _run_cell(grid: Grid, cell: Cell) -> dict[str, Any]:
    """A Ray task: one cell on a worker."""
    return grid.run_cell(cell)


class RayExecutor:
    """Cells as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray runtime of ``workers``
    CPUs when no address is given. Ray does not retry a task by itself here: :func:`run_grid` reruns a failed
    cell once, whatever failed (the cell's code, or its worker process, killed)."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install '.[cluster]' (ray is pinned there)") from None
        self.ray = ray
        if address:
            _check_reachable(address)
            self._connect(address)
        else:
            # in this thread: Ray's processes die with the thread that started them (PR_SET_PDEATHSIG)
            ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False, **self.QUIET)
        self.workers = int(ray.cluster_resources().get("CPU", 0))
        self.task = ray.remote(num_cpus=1, max_retries=0)(_run_cell)

    QUIET = {"logging_level": "ERROR", "log_to_driver": False}

    def _connect(self, address: str) -> None:
        """``ray.init(address)``, bounded: a reachable port that is no Ray head must not hang the sweep. (Joining a
        running cluster starts no process, so a helper thread may make the call.)"""
        import threading

        error: list[BaseException] = []

        def connect() -> None:
            try:
                self.ray.init(address=address, **self.QUIET)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                error.append(exc)

        t = threading.Thread(target=connect, daemon=True)
        t.start()
        t.join(RAY_CONNECT_TIMEOUT_S)
        if t.is_alive():
            raise SweepError(f"Ray at {address} did not answer within {RAY_CONNECT_TIMEOUT_S:.0f} s; is a Ray head "
                             "running there (`ray start --head`)? Or use --executor local")
        if error:
            raise SweepError(f"cannot join Ray at {address}: {error[0]}")

    def map_unordered(self, grid: Grid, cells: Sequence[Cell]) -> Iterator[tuple[Cell, Outcome]]:
        ray = self.ray
        ref = ray.put(grid)
        pending = {self.task.remote(ref, cell): cell for cell in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for fut in done:
                cell = pending.pop(fut)
                try:
                    yield cell, ray.get(fut)
                except Exception as exc:  # noqa: BLE001 - a task error or a dead worker: rerun once by run_grid
                    yield cell, exc

    def close(self) -> None:
        self.ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast, with what to do, when nothing listens at ``host:port`` (``ray://`` addresses included)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"Ray address {address!r}: use HOST:PORT (the head's GCS port, 6379 by default)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise SweepError(f"cannot reach Ray at {address} within {RAY_CONNECT_TIMEOUT_S:.0f} s ({exc}); start a head "
                         "there (`ray start --head`), or omit --ray-address for a local Ray runtime, or use "
                         "--executor local") from None


def make_executor(name: str, address: str | None = None, workers: int | None = None) -> LocalExecutor | RayExecutor:
    """``local`` or ``ray`` (``address``: a running cluster; none: a local runtime of ``workers`` CPUs)."""
    if name == "local":
        if address:
            raise ConfigError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, workers)
    raise ConfigError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")


# ---- the sweep ---------------------------------------------------------------------------------------------------
def run_grid(grid: Grid, executor: LocalExecutor | RayExecutor, store: CellStore | None = None,
             progress: bool = True) -> dict[Cell, dict[str, Any]]:
    """Every cell's result, in the grid's order: those already in ``store``, then the rest through ``executor``,
    each saved as it completes. A failed cell is reported and rerun once; a second failure raises
    :class:`SweepError` naming the cells."""
    cells = grid.cells()
    if len(set(cells)) != len(cells):
        raise ConfigError(f"the {grid.kind} grid repeats a cell; give each value of an axis once")
    results = {c: r for c, r in (store.done() if store else {}).items() if c in set(cells)}
    todo = [c for c in cells if c not in results]
    if (cost := getattr(grid, "cost", None)) is not None:  # longest first; each cell is seeded by its coordinates
        todo.sort(key=cost, reverse=True)
    bar = tqdm(total=len(cells), initial=len(results), desc=f"{grid.kind} cells ({executor.name})", unit="cell",
               disable=not progress, file=sys.stderr)
    started = time.monotonic()

    def collect(batch: Sequence[Cell]) -> dict[Cell, BaseException]:
        failed = {}
        for cell, outcome in executor.map_unordered(grid, batch):
            if isinstance(outcome, BaseException):
                if isinstance(cause := getattr(outcome, "cause", outcome), DiffSemError):
                    raise cause  # bad input or a missing file: the same again on a rerun, and already one clear line
                failed[cell] = outcome
                continue
            outcome = round_trip(outcome)
            if store is not None:
                store.save(cell, outcome)
            results[cell] = outcome
            bar.update(1)
        return failed

    try:
        failed = collect(todo)
        for cell, exc in failed.items():
            bar.write(f"cell ({describe(grid, cell)}) failed: {_reason(exc)}; rerunning it once", file=sys.stderr)
        failed = collect(list(failed)) if failed else {}
    finally:
        bar.close()
    if failed:
        lines = "; ".join(f"({describe(grid, c)}): {_reason(e)}" for c, e in failed.items())
        raise SweepError(f"{len(failed)} cell(s) of the {grid.kind} grid failed twice: {lines}"
                         + (f" (finished cells are kept in {store.folder}; rerun to resume)" if store else ""))
    if progress:
        print(f"{grid.kind}: {len(todo)} cells computed, {len(cells) - len(todo)} resumed, "
              f"{time.monotonic() - started:.1f} s ({executor.name})", file=sys.stderr)
    return {c: results[c] for c in cells}


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]
