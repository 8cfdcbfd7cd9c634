"""The CLI's sweeps as grids for :mod:`diffsem.sweep`: ``diffsem eval``, ``diffsem attack eval`` and ``diffsem attack
train``, each a picklable record of paths and options.

A grid loads its models once per process (:func:`diffsem.sweep.process_cache`), in the driver and on every Ray
worker alike, and computes a cell with the evaluators' own per-cell functions (:func:`diffsem.evaluate.eval_cell`,
:func:`diffsem.attacks.run.attack_cell`), so the executor changes where a cell runs, never what it computes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffsem.sweep import Cell, process_cache, settings_key


def _model_id(checkpoints: str) -> str | None:
    """The bundle's model id, so cells stored for other weights are never resumed (None: unreadable here)."""
    try:
        return json.loads((Path(checkpoints) / "bundle.json").read_text())["model_id"]
    except (OSError, ValueError, KeyError):
        return None


@dataclass(frozen=True)
class EvalGrid:
    """``diffsem eval``'s sweep (:func:`diffsem.evaluate.eval_cells`). ``ec``: the EvalConfig as a dict."""

    dataset: str
    checkpoints: str
    ec: dict[str, Any]
    device: str = "auto"
    data_dir: str | None = None
    k: int | None = None
    kind: str = "eval"
    axes: tuple[str, ...] = ("kind", "snr_db", "t_star", "speed_kmh", "feedback_delay")

    AXIS_FIELDS = ("snrs", "t_stars", "default_t_star", "aging_snrs", "aging_speeds", "aging_delays")

    def settings(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "checkpoints": self.checkpoints, "model_id": _model_id(self.checkpoints),
                **{k: v for k, v in self.ec.items() if k not in self.AXIS_FIELDS}}

    def context(self) -> tuple[Any, Any]:
        def build() -> tuple[Any, Any]:
            from diffsem.bundle import load_bundle
            from diffsem.config import ModelConfig, build
            from diffsem.data import load_split
            from diffsem.evaluate import EvalConfig, eval_context

            expected = build(ModelConfig, dataset=self.dataset, k=self.k) if self.k is not None else None
            bundle = load_bundle(Path(self.checkpoints), expected=expected, device=self.device)
            ec = EvalConfig(**self.ec)
            images, labels = load_split(self.dataset, "test", Path(self.data_dir) if self.data_dir else None)
            return eval_context(bundle, ec, images[:ec.n], labels[:ec.n]), images[:ec.n]

        return process_cache(settings_key(self), build)

    def cells(self) -> list[Cell]:
        from diffsem.evaluate import EvalConfig, eval_cells

        return eval_cells(EvalConfig(**self.ec))

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from diffsem.evaluate import eval_cell

        return eval_cell(self.context()[0], cell)

    def assemble(self, results: dict[Cell, dict[str, Any]], seconds: float) -> dict[str, Any]:
        from diffsem.evaluate import assemble

        ctx, images = self.context()
        return assemble(ctx, images, results, seconds)


@dataclass(frozen=True)
class AttackEvalGrid:
    """``diffsem attack eval``'s sweep (:func:`diffsem.attacks.run.attack_cells`): one cell per (SNR, self-noise,
    t*, eavesdropper offset, attack)."""

    dataset: str
    checkpoints: str
    attacks: tuple[str, ...]
    snrs: tuple[float, ...]
    self_noise: tuple[str, ...]
    t_stars: tuple[int | None, ...]
    offsets: tuple[float, ...]
    n: int
    transmitter_checkpoint: str | None = None
    whitebox_steps: int = 100
    judges: tuple[str, ...] | None = None
    adapted: bool = True
    seed: int = 0
    decode: str = "direct"
    fading: str = "none"
    phy: dict[str, Any] = field(default_factory=dict)
    gap_judge: str = "max"
    device: str = "auto"
    data_dir: str | None = None
    neighbours: bool = False  # also the judge-free measures (diffsem.neighbours)
    keep: int = 0  # reconstructions per row returned for judging pools (0: none)
    kind: str = "attack-eval"
    axes: tuple[str, ...] = ("snr_db", "self_noise", "t_star", "eve_offset_db", "attack")

    def settings(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items()
               if k not in ("attacks", "snrs", "self_noise", "t_stars", "offsets", "kind", "axes", "device", "data_dir")}
        return out | {"model_id": _model_id(self.checkpoints)}

    def axis_values(self) -> tuple[Any, ...]:
        return self.snrs, self.self_noise, self.t_stars, self.offsets, self.attacks

    def context(self) -> Any:
        def build() -> Any:
            from diffsem.attacks.run import attack_context, load_attacks
            from diffsem.bundle import load_bundle
            from diffsem.data import load_split
            from diffsem.judges import load_panel
            from diffsem.neighbours import robust_neighbours

            root = Path(self.checkpoints)
            bundle = load_bundle(root, device=self.device)
            tx = Path(self.transmitter_checkpoint) if self.transmitter_checkpoint else None
            attacks = load_attacks(bundle, list(self.attacks), root, tx, {"steps": self.whitebox_steps})
            panel = load_panel(bundle, root, list(self.judges) if self.judges is not None else None, list(attacks),
                               adapted=self.adapted)
            data_dir = Path(self.data_dir) if self.data_dir else None
            images, labels = load_split(self.dataset, "test", data_dir)
            near = robust_neighbours(bundle.cfg, root, data_dir) if self.neighbours else None
            return attack_context(bundle, attacks, images[:self.n], labels[:self.n], self.seed, self.decode,
                                  self.fading, self.phy, panel, self.gap_judge, near, self.keep)

        return process_cache(settings_key(self), build)

    def cells(self) -> list[Cell]:
        from diffsem.attacks.run import attack_cells

        return attack_cells(*self.axis_values())

    def cost(self, cell: Cell) -> float:
        """The cell's attack's relative cost (``Attack.cost``), to start the costliest cells first."""
        from diffsem.attacks.base import attack_class

        return attack_class(cell[-1]).cost

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from diffsem.attacks.run import attack_cell

        return attack_cell(self.context(), cell)

    def assemble(self, results: dict[Cell, dict[str, Any]], seconds: float) -> dict[str, Any]:
        from diffsem.attacks.run import assemble_attacks

        return assemble_attacks(self.context(), self.axis_values(), results, seconds)


@dataclass(frozen=True)
class AttackTrainGrid:
    """``diffsem attack train``'s sweep: one cell per attack, which trains its weights (when it has any) and then,
    unless told otherwise, its adapted judge (when it returns reconstructions), into ``out/attacks``. Each cell is
    seeded by ``seed`` alone, as a run of one attack is. On several hosts, ``out`` must be a shared folder."""

    dataset: str
    checkpoints: str
    attacks: tuple[str, ...]
    out: str
    n_aux: int = 6000
    epochs: int = 3
    train_snr_db: float | None = None
    seed: int = 0
    adapted_judge: str = "yes"
    transmitter_checkpoint: str | None = None
    whitebox_steps: int = 100
    data_dir: str | None = None
    kind: str = "attack-train"
    axes: tuple[str, ...] = ("attack",)

    def settings(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("attacks", "kind", "axes", "data_dir")}
        return out | {"model_id": _model_id(self.checkpoints)}

    def cells(self) -> list[Cell]:
        return [(name,) for name in self.attacks]

    def run_cell(self, cell: Cell) -> dict[str, Any]:
        from diffsem.attacks import attack_class, load_attack
        from diffsem.attacks.adapted import NoReconstructions, train_adapted_judge
        from diffsem.attacks.run import train_attack
        from diffsem.bundle import load_bundle
        from diffsem.errors import DiffSemError

        (name,) = cell
        bundle = process_cache(settings_key(self), lambda: load_bundle(Path(self.checkpoints), device="cpu"))
        cls = attack_class(name)
        out, data_dir = Path(self.out), Path(self.data_dir) if self.data_dir else None
        lines = []
        options = {"train_snr_db": self.train_snr_db} if self.train_snr_db is not None else {}
        if cls.trainable and self.adapted_judge != "only":
            att, path, metrics = train_attack(bundle, name, out, data_dir, self.n_aux, self.epochs, self.seed, **options)
            lines.append(f"wrote {path} ({metrics})")
        else:
            if self.adapted_judge == "no":
                raise DiffSemError(f"attack {name!r} has nothing to train but its adapted judge "
                                   "(--adapted-judge yes or only)")
            extra = {"steps": self.whitebox_steps} if cls.needs_transmitter else {}
            tx = Path(self.transmitter_checkpoint) if self.transmitter_checkpoint else None
            att = load_attack(name, bundle, checkpoint_root=out, transmitter_checkpoint=tx, **extra)
        if self.adapted_judge != "no":
            try:
                path, metrics = train_adapted_judge(att, out, data_dir, self.n_aux, self.seed)
                lines.append(f"wrote {path} ({metrics})")
            except NoReconstructions:
                if not (cls.trainable and self.adapted_judge == "yes"):
                    raise
                lines.append(f"no adapted judge: {name!r} decides labels itself")
        return {"lines": lines}
