"""The sweep executor (diffsem/sweep.py): cells seeded by their coordinates give bit-identical tables in this
process, resumed from a store, or on a real Ray cluster (a head plus a worker joined by address); a failed cell is
named and rerun once; a worker killed mid-sweep is survived; an unreachable Ray address fails fast."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from diffsem.errors import ConfigError
from diffsem.grids import AttackEvalGrid, EvalGrid
from diffsem.sweep import CellStore, LocalExecutor, SweepError, run_grid

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = str(ROOT / "checkpoints" / "mnist")


def attack_grid(**kw: Any) -> AttackEvalGrid:
    """2 SNRs x 2 t* x 2 offsets x 2 attacks = 16 cells on 64 images (random self-noise)."""
    return AttackEvalGrid("mnist", CHECKPOINTS, ("feature-classifier", "inversion-decoder"), (0.0, 20.0), ("random",),
                          (None, 300), (0.0, -5.0), 64, judges=("cnn",), adapted=False, **kw)


def eval_grid() -> EvalGrid:
    ec = {"n": 64, "snrs": [0.0, 10.0], "t_stars": [300], "eve_offsets": [0.0], "modes": ["direct", "denoise"],
          "batch_size": 32}
    return EvalGrid("mnist", CHECKPOINTS, ec, device="cpu")


def rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in res["rows"]]


class Interrupt(BaseException):  # as a Ctrl-C is: never taken for a failed cell
    pass


@dataclass(frozen=True)
class Stopping:
    """A grid that stops (like a Ctrl-C) after ``stop_after`` cells of this process."""

    inner: Any
    stop_after: int
    kind: str = "attack-eval"

    @property
    def axes(self) -> tuple[str, ...]:
        return self.inner.axes

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def cells(self) -> list[tuple[Any, ...]]:
        return self.inner.cells()

    def run_cell(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        ran = getattr(Stopping, "ran", 0)
        if ran >= self.stop_after:
            raise Interrupt
        Stopping.ran = ran + 1
        return self.inner.run_cell(cell)


def test_cells_give_the_tables_of_the_in_process_evaluation_and_resume_identically(tmp_path: Path) -> None:
    from diffsem.attacks.run import evaluate_attacks

    grid = attack_grid()
    ctx = grid.context()
    whole = evaluate_attacks(ctx.bundle, ctx.attacks, ctx.images, ctx.labels, [None, 300], [0.0, -5.0], [0.0, 20.0],
                             ("random",), panel=ctx.panel)
    straight = grid.assemble(run_grid(grid, LocalExecutor(), progress=False), 0.0)
    assert rows(straight) == rows(whole) and len(rows(whole)) == 16
    assert all(whole["gallery"][k].equal(straight["gallery"][k]) for k in whole["gallery"])

    store = tmp_path / "cells"
    Stopping.ran = 0
    with pytest.raises(Interrupt):  # interrupted after 5 cells ...
        run_grid(Stopping(grid, 5), LocalExecutor(), CellStore(store, grid), progress=False)
    assert len(list(store.glob("*.json"))) == 1 + 5  # grid.json and the five finished cells
    Stopping.ran = 0
    resumed = run_grid(Stopping(grid, 11), LocalExecutor(), CellStore(store, grid), progress=False)  # ... 11 to go
    assert Stopping.ran == 11
    assert rows(grid.assemble(resumed, 0.0)) == rows(straight)  # the same table, bit for bit


def test_a_store_of_other_settings_is_refused(tmp_path: Path) -> None:
    CellStore(tmp_path / "nothing", attack_grid())
    assert not (tmp_path / "nothing").exists()  # a sweep refused before its first cell leaves nothing behind
    CellStore(tmp_path, attack_grid()).save((0.0, "random", None, 0.0, "feature-classifier"), {"row": {}})
    with pytest.raises(ConfigError, match="differs in seed"):
        CellStore(tmp_path, attack_grid(seed=1))
    CellStore(tmp_path, AttackEvalGrid("mnist", CHECKPOINTS, ("feature-classifier",), (5.0,), ("random",), (None,),
                                       (0.0,), 64, judges=("cnn",), adapted=False))  # other axes: the same store


@dataclass(frozen=True)
class Flaky:
    """Cells 0..3; cell 1 fails once (a marker file says it already failed), cell 3 fails always."""

    folder: str
    always: tuple[int, ...] = (3,)
    kind: str = "toy"
    axes: tuple[str, ...] = ("i",)

    def settings(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def cells(self) -> list[tuple[Any, ...]]:
        return [(i,) for i in range(4)]

    def run_cell(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        marker = Path(self.folder) / f"failed-{cell[0]}"
        if cell[0] in self.always or (cell[0] == 1 and not marker.exists()):
            marker.touch()
            raise RuntimeError(f"cell {cell[0]} broke")
        return {"square": cell[0] ** 2}


def test_a_failed_cell_is_named_and_rerun_once_then_the_sweep_fails(tmp_path: Path, capsys) -> None:
    with pytest.raises(SweepError, match=r"1 cell\(s\) of the toy grid failed twice: \(i=3\): RuntimeError: cell 3 broke"):
        run_grid(Flaky(str(tmp_path)), LocalExecutor(), CellStore(tmp_path / "cells", Flaky(str(tmp_path))))
    err = capsys.readouterr().err
    assert "cell (i=1) failed: RuntimeError: cell 1 broke; rerunning it once" in err
    done = CellStore(tmp_path / "cells", Flaky(str(tmp_path))).done()
    assert done == {(0,): {"square": 0}, (1,): {"square": 1}, (2,): {"square": 4}}  # kept for the next run
    assert run_grid(Flaky(str(tmp_path), always=()), LocalExecutor(), CellStore(tmp_path / "cells", Flaky(str(tmp_path))),
                    progress=False)[(3,)] == {"square": 9}


@dataclass(frozen=True)
class Costed:
    """Cells 0..5 of cost 1, 5, 2, 5, 0, 3; ``ran`` records the order they ran in."""

    ran: list
    kind: str = "toy"
    axes: tuple[str, ...] = ("i",)
    costs: tuple[float, ...] = (1, 5, 2, 5, 0, 3)

    def settings(self) -> dict[str, Any]:
        return {}

    def cells(self) -> list[tuple[Any, ...]]:
        return [(i,) for i in range(len(self.costs))]

    def cost(self, cell: tuple[Any, ...]) -> float:
        return self.costs[cell[0]]

    def run_cell(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        self.ran.append(cell[0])
        return {"i": cell[0]}


def test_the_costliest_cells_start_first_and_the_results_keep_the_grid_order() -> None:
    ran: list[int] = []
    results = run_grid(Costed(ran), LocalExecutor(), progress=False)
    assert ran == [1, 3, 5, 2, 0, 4]  # by cost, ties in grid order
    assert list(results) == [(i,) for i in range(6)]
    g = attack_grid()  # the attack grid's costs are its attacks' (Attack.cost), measured in BENCHMARKS
    cost = {a: g.cost((0.0, "random", None, 0.0, a)) for a in ("whitebox-inversion", "inversion-decoder",
                                                               "feature-classifier")}
    assert cost["whitebox-inversion"] > cost["inversion-decoder"] > cost["feature-classifier"], cost


def test_the_cli_takes_an_executor_and_refuses_a_bad_one(tmp_path: Path, capsys) -> None:
    from diffsem.cli import main

    assert main(["eval", "--n", "16", "--snrs", "10", "--t-stars", "300", "--eve-offsets", "0", "--out", str(tmp_path),
                 "--executor", "local", "--ray-address", "127.0.0.1:1"]) == 2
    assert "--ray-address needs --executor ray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--executor", "slurm"])


# ---- Ray ----------------------------------------------------------------------------------------------------------
ray = pytest.importorskip("ray", reason="Ray is the optional extra: pip install '.[cluster]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_ray_address_fails_within_30_s() -> None:
    from diffsem.sweep import RayExecutor

    started = time.monotonic()
    with pytest.raises(SweepError, match=r"cannot reach Ray at 127\.0\.0\.1:\d+ .*ray start --head"):
        RayExecutor(f"127.0.0.1:{free_port()}")  # nothing listens there
    mute = socket.socket()  # a port that accepts but is no Ray head
    mute.bind(("127.0.0.1", 0))
    mute.listen()
    with mute, pytest.raises(SweepError, match="did not answer within"):
        RayExecutor(f"127.0.0.1:{mute.getsockname()[1]}")
    assert time.monotonic() - started < 30


class RayCluster:
    """A real Ray cluster on this machine: a head and one worker node that joins it by address, each a
    `ray start --block` process of its own session (stopped by process group, never `ray stop`, which would stop
    every Ray process on the machine)."""

    def __init__(self) -> None:
        self.head = self.worker = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray_bin = str(Path(sys.executable).with_name("ray"))
        common = ["--block", "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                  "--dashboard-agent-listen-port", str(free_port())]
        # Ray 2.60's `ray start` asks drivers for a token by default; a driver reads RAY_AUTH_MODE when it imports
        # ray, so this throw-away cluster on one machine opts out (a real one keeps it: docs/operations.md)
        self.auth = {"RAY_AUTH_MODE": "disabled"}
        # tests/ on the path: the toy grids below are pickled by reference, as any importable grid is
        env = {**os.environ, **self.auth, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
               "RAY_USAGE_STATS_ENABLED": "0"}
        self.head = subprocess.Popen(
            [ray_bin, "start", "--head", "--port", str(self.port), "--temp-dir", self.temp, "--include-dashboard",
             "false", "--ray-client-server-port", str(free_port()), "--num-cpus", "0", *common], env=env,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_head()  # the head runs no task (no CPU): every cell goes to the worker that joins by address
        common[-1] = str(free_port())
        self.worker = subprocess.Popen([ray_bin, "start", "--address", self.address, "--num-cpus", "1", *common],
                                       env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        try:
            deadline = time.monotonic() + 120
            while ray.cluster_resources().get("CPU", 0) < 1:
                assert time.monotonic() < deadline and self.worker.poll() is None, "the worker node did not join"
                time.sleep(0.3)
        finally:
            ray.shutdown()

    def _wait_head(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.head.poll() is None, "ray start --head exited"
                time.sleep(0.3)
        raise AssertionError("the Ray head did not listen")

    def stop(self) -> None:
        for proc in (p for p in (self.worker, self.head) if p is not None):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(20)
                    break
                except subprocess.TimeoutExpired:
                    continue
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = RayCluster()
    yield c
    c.stop()


def test_a_real_ray_cluster_gives_the_local_tables_bit_for_bit(cluster: RayCluster, tmp_path: Path) -> None:
    from diffsem.sweep import RayExecutor

    grid = eval_grid()
    local = grid.assemble(run_grid(grid, LocalExecutor(), progress=False), 0.0)
    executor = RayExecutor(cluster.address)
    try:
        assert executor.workers == 1  # the worker node that joined by address (the head has no CPU to give)
        remote = grid.assemble(run_grid(grid, executor, CellStore(tmp_path, grid), progress=False), 0.0)
    finally:
        executor.close()
    assert rows(remote) == rows(local) and len(rows(local)) == 4
    assert remote["eve_view"] == local["eve_view"]
    stored = [json.loads(p.read_text()) for p in tmp_path.glob("*.json") if p.name != "grid.json"]
    assert len(stored) == 4


@dataclass(frozen=True)
class Killing:
    """Cells 0..5: the first attempt at cell 2 kills its own worker process (SIGKILL), as a node failure would."""

    folder: str
    kind: str = "toy"
    axes: tuple[str, ...] = ("i",)

    def settings(self) -> dict[str, Any]:
        return {"folder": self.folder}

    def cells(self) -> list[tuple[Any, ...]]:
        return [(i,) for i in range(6)]

    def run_cell(self, cell: tuple[Any, ...]) -> dict[str, Any]:
        import torch

        from diffsem.seeds import generator

        marker = Path(self.folder) / "killed"
        if cell[0] == 2 and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return {"draw": torch.rand(3, generator=generator(0, "toy", *cell)).tolist()}


def test_a_worker_killed_mid_sweep_is_survived_and_the_results_are_the_same(cluster: RayCluster, tmp_path: Path,
                                                                           capsys) -> None:
    from diffsem.sweep import RayExecutor

    grid = Killing(str(tmp_path))
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "killed").touch()  # in this process, no cell kills anything
    expected = run_grid(Killing(str(tmp_path / "here")), LocalExecutor(), progress=False)
    executor = RayExecutor(cluster.address)
    try:
        results = run_grid(grid, executor)
    finally:
        executor.close()
    assert (tmp_path / "killed").exists()
    assert "cell (i=2) failed" in capsys.readouterr().err
    assert results == expected


def test_attack_train_runs_one_cell_per_attack(tmp_path: Path, capsys) -> None:
    from diffsem.cli import main

    assert main(["attack", "train", "--attack", "inversion-decoder,adaptive-diffusion", "--n-aux", "64", "--epochs", "1",
                 "--adapted-judge", "no", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    for name in ("inversion-decoder", "adaptive-diffusion"):
        assert f"wrote {tmp_path / 'attacks' / name}.safetensors" in out
    assert "attack-train: 2 cells computed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attacks"]  # no cell store beside the checkpoints
