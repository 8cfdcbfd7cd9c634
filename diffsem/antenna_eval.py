"""The offline measurement of null-space self-noise (``diffsem antennas eval``; docs/design.md §3, multi-antenna links
and null-space self-noise): who learns what when the transmitter has several antennas.

For each condition (legitimate SNR, CSI, transmit antennas, beam fraction, t*) on one PHY (``flat``: one channel
matrix per frame; ``ofdm``: one per resource element of a 3GPP TDL/CDL channel on the grid, the precoder and the
null space per RE) test images go through the
multi-antenna frame path (:func:`diffsem.antenna_path.send_antennas`) to the legitimate receiver (one antenna) and to
every eavesdropper of the grid (SNR offset x receive antennas x correlation with the legitimate channel), each with
its own generator seeded by (seed, role, SNR, t*) as ``diffsem attack eval`` seeds them. The receiver decodes; every
attack runs on each eavesdropper's LMMSE-combined view, its reconstructions judged by the panel of judges
(:func:`diffsem.attacks.run.evaluate_attacks`'s rows: every judge, their max and spread). Attacks that read the
transmitter's weights may run on the first ``whitebox_n`` images only (their rows say ``n``). The secrecy gap is the
legitimate accuracy minus the best attack's, per eavesdropper.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from tqdm.auto import tqdm

from diffsem.antenna_path import send_antennas
from diffsem.attacks.base import Attack
from diffsem.attacks.builtin import query_encoder
from diffsem.attacks.run import _attack_rows, eval_keyed
from diffsem.checkpoints import code_version
from diffsem.config import ARRAY_MODELS, CHANNEL_MODELS, LinkConfig, PrivacyConfig, build
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, TX, View, eve_role, role_generators
from diffsem.judges import JudgePanel
from diffsem.phy.antennas import AntennaConfig, MimoLink
from diffsem.phy.nullspace import NullSpaceConfig
from diffsem.sweep import to_json


class AntennaEvalConfig(BaseModel):
    """The grid. ``csi``: ``ESTIMATOR:DELAY`` items (``perfect:0``, ``ls:1``); eavesdroppers: every (offset dB,
    receive antennas, correlation); an ``n_tx`` of 1 runs once with the whole power on the beam (no null space).
    ``channel_model``: flat ``rayleigh`` (default) or ``CDL-A..E``; ofdm ``TDL-A..E`` (default ``TDL-A``) or
    ``CDL-A..E``, on the default grid of :class:`~diffsem.config.LinkConfig`."""

    model_config = ConfigDict(extra="forbid")
    n: int = 2000
    phy: Literal["flat", "ofdm"] = "flat"
    snrs: list[float] = [20.0]
    t_stars: list[int | None] = [None, 300]
    self_noise: list[Literal["random", "keyed"]] = Field(["random"], description="the beam's eps_self: random, or "
                                                         "keyed (the legitimate receiver holds the key)")
    n_tx: list[int] = [4]
    beam_fractions: list[float] = [0.01]
    csi: list[str] = ["perfect:0"]
    speed_kmh: float = 3.0
    carrier_ghz: float = 3.5
    channel_model: str | None = None
    delay_spread_ns: float = Field(100.0, description="ofdm: RMS delay spread (ns)")
    eve_offsets: list[float] = [0.0]
    eve_rx: list[int] = [1]
    eve_correlations: list[float] = [0.0]
    seed: int = 0
    decode: str = "direct"
    whitebox_n: int = Field(200, description="images for attacks that read the transmitter's weights")

    @field_validator("snrs", "eve_offsets")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{values} must be finite numbers of dB (a noiseless eavesdropper has no meaning here: "
                             "its combiner would invert a singular covariance)")
        return values

    @field_validator("csi")
    @classmethod
    def _csi(cls, values: list[str]) -> list[str]:
        for v in values:
            csi_setting(v)
        return values

    @model_validator(mode="after")
    def _settings(self) -> AntennaEvalConfig:
        """Every condition's split and every link's settings are valid (one-line errors, before loading)."""
        if self.channel_model is None:
            self.channel_model = "TDL-A" if self.phy == "ofdm" else "rayleigh"
        models = CHANNEL_MODELS if self.phy == "ofdm" else ARRAY_MODELS
        if self.channel_model not in models:
            raise ValueError(f"channel_model {self.channel_model!r} does not exist on phy={self.phy}; use "
                             f"one of {', '.join(models)}")
        for cond in self.conditions():
            NullSpaceConfig(beam_fraction=cond["beam_fraction"], null_space=cond["null_space"]).check(cond["n_tx"])
            self.link_settings(cond, cond["snr_db"], legit=True)
            for _, off, n_rx, rho in self.eavesdroppers():
                self.link_settings(cond, cond["snr_db"] + off, n_rx, rho)
        return self

    def link_settings(self, cond: dict[str, Any], snr_db: float, n_rx: int = 1, correlation: float = 0.0,
                      legit: bool = False) -> tuple[LinkConfig, AntennaConfig]:
        """One link of condition ``cond``: its :class:`LinkConfig` and :class:`AntennaConfig`. Only the
        ``legit`` link gets the condition's CSI (``estimator``, ``feedback_delay``): an eavesdropper feeds nothing
        back. On ofdm the channel and the CSI are the link's settings (:class:`~diffsem.phy.antennas.MimoLink`)."""
        csi = {"estimator": cond["estimator"], "feedback_delay": cond["feedback_delay"]} if legit else \
            {"estimator": "perfect", "feedback_delay": 0}
        csi |= {"speed_kmh": self.speed_kmh, "carrier_ghz": self.carrier_ghz}
        array = {"n_tx": cond["n_tx"], "n_rx": n_rx, "correlation": correlation}
        if self.phy == "flat":
            return (build(LinkConfig, snr_db=snr_db),
                    build(AntennaConfig, channel_model=self.channel_model, **csi, **array))
        link = build(LinkConfig, phy="ofdm", snr_db=snr_db, channel_model=self.channel_model,
                     delay_spread_ns=self.delay_spread_ns, **csi)
        return link, build(AntennaConfig, **array)

    def conditions(self) -> list[dict[str, Any]]:
        """Every condition: snr_db, estimator, feedback_delay, n_tx, beam_fraction, null_space, self_noise, t_star."""
        out: list[dict[str, Any]] = []
        for snr in self.snrs:
            for spec in self.csi:
                est, delay = csi_setting(spec)
                for n_tx in self.n_tx:
                    for beta in (self.beam_fractions if n_tx > 1 else [1.0]):
                        for mode in self.self_noise:
                            for t in self.t_stars:
                                out.append({"snr_db": snr, "estimator": est, "feedback_delay": delay, "n_tx": n_tx,
                                            "beam_fraction": beta, "null_space": n_tx > 1, "self_noise": mode,
                                            "t_star": t})
        return out

    def eavesdroppers(self) -> list[tuple[str, float, int, float]]:
        """(role, offset dB, receive antennas, correlation) of every eavesdropper; (1, 0) keeps ``eve_role``'s name,
        so a one-antenna condition seeds its eavesdropper as ``diffsem attack eval`` does."""
        return [(eve_name(off, n, rho), off, n, rho)
                for off in self.eve_offsets for n in self.eve_rx for rho in self.eve_correlations]


def csi_setting(spec: str) -> tuple[str, int]:
    """``'ls:1'`` -> ("ls", 1): the legitimate receiver's estimator and feedback delay in frames."""
    est, _, delay = spec.partition(":")
    try:
        build(AntennaConfig, estimator=est, feedback_delay=int(delay or 0))
        return est, int(delay or 0)
    except (ConfigError, ValueError):
        raise ConfigError(f"CSI setting {spec!r}: use ESTIMATOR:DELAY with ESTIMATOR perfect or ls and DELAY "
                          "frames in [0, 64], e.g. perfect:0,ls:1") from None


def eve_name(offset_db: float, n_rx: int, correlation: float) -> str:
    """An eavesdropper's role (its generator's name)."""
    base = eve_role(offset_db)
    return base if (n_rx, correlation) == (1, 0.0) else f"{base}-rx{n_rx}-rho{correlation:g}"


def _links(cfg: AntennaEvalConfig, cond: dict[str, Any], k: int
           ) -> tuple[dict[str, MimoLink], dict[str, torch.Generator]]:
    eves = cfg.eavesdroppers()
    gens = role_generators(cfg.seed, [TX, LEGIT, *(e[0] for e in eves)], cond["snr_db"], cond["t_star"])
    links = {LEGIT: MimoLink(*cfg.link_settings(cond, cond["snr_db"], legit=True), gens[LEGIT], k)}
    for name, off, n_rx, rho in eves:
        links[name] = MimoLink(*cfg.link_settings(cond, cond["snr_db"] + off, n_rx, rho), gens[name], k)
    return links, gens


def _subset(v: View, m: int) -> View:
    return View(v.z[:m], v.abar_eff[:m], v.channel)


@torch.no_grad()
def evaluate_antennas(bundle: Any, attacks: dict[str, Attack], images: torch.Tensor, labels: torch.Tensor,
                      cfg: AntennaEvalConfig, panel: JudgePanel, gap_judge: str = "max") -> dict[str, Any]:
    """Every attack against every eavesdropper of every condition of ``cfg``; images (N, 1, 28, 28) in [0, 1],
    labels (N,). Rows as :func:`diffsem.attacks.run.evaluate_attacks`'s, with the condition's and the
    eavesdropper's antenna settings; the same seed gives the same rows."""
    from diffsem.receiver import DiffusionReceiver

    for t in cfg.t_stars:
        if t is not None:
            build(PrivacyConfig, t_star=t, num_train_timesteps=len(bundle.abar))
    started = time.time()
    s = query_encoder(bundle, images)
    receiver = DiffusionReceiver(bundle)
    wide = {n: a for n, a in attacks.items() if not a.needs_transmitter}
    narrow = {n: a for n, a in attacks.items() if a.needs_transmitter}
    m = min(cfg.whitebox_n, len(images))
    rows: list[dict[str, Any]] = []
    for cond in tqdm(cfg.conditions(), desc="antenna conditions", unit="condition"):
        links, gens = _links(cfg, cond, s.shape[1])
        split = NullSpaceConfig(beam_fraction=cond["beam_fraction"], null_space=cond["null_space"])
        out = send_antennas(s, cond["t_star"], bundle.abar, links, gens, split,
                            keyed=eval_keyed(cfg.seed, cond["snr_db"], cond["t_star"]) if cond["self_noise"] == "keyed"
                            else None)
        legit = out.views[LEGIT]
        decided = receiver.decode(legit.z.to(bundle.device), legit.abar_eff.to(bundle.device), cfg.decode).labels.cpu()
        correct = (decided == labels).float()
        for name, off, n_rx, rho in cfg.eavesdroppers():
            eve = out.views[name]
            base = {**cond, "phy": cfg.phy, "channel_model": cfg.channel_model, "speed_kmh": cfg.speed_kmh,
                    "eve_offset_db": off,
                    "eve_n_rx": n_rx, "eve_correlation": rho,
                    "legit_acc": float(correct.mean()), "legit_abar_eff": float(legit.abar_eff.mean()),
                    "eve_abar_eff": float(eve.abar_eff.mean()), "n": len(images)}
            mine, _ = _attack_rows(wide, panel, eve, out.sent.header, images, labels, base, gap_judge)
            if narrow:
                few = {**base, "n": m, "legit_acc_on_n": float(correct[:m].mean())}
                more, _ = _attack_rows(narrow, panel, _subset(eve, m), out.sent.header, images[:m], labels[:m],
                                       few, gap_judge)
                mine += more
            best = max(r["attacker_acc"] for r in mine)
            for r in mine:
                r["secrecy_gap"] = r["legit_acc"] - best
            rows.extend(mine)
    config = {"dataset": bundle.cfg.dataset, "model_id": bundle.model_id, **cfg.model_dump(), "n": len(images),
              "attacks": list(attacks), "judges": {a: panel.names(a) for a in attacks}, "gap_judge": gap_judge,
              "code_version": code_version(), "seconds": round(time.time() - started, 1)}
    return {"config": config, "rows": rows}


def best_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (condition, eavesdropper): its best attack's row."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = _key(r) + (r["eve_offset_db"], r["eve_n_rx"], r["eve_correlation"])
        if key not in best or r["attacker_acc"] > best[key]["attacker_acc"]:
            best[key] = r
    return list(best.values())


def _key(r: dict[str, Any]) -> tuple:
    """A condition: channel, SNR, CSI, transmit antennas, self-noise, beam fraction, t*."""
    return (r["phy"], r["channel_model"], r["speed_kmh"], r["snr_db"], r["estimator"], r["feedback_delay"], r["n_tx"],
            r["self_noise"], r["beam_fraction"], r["t_star"])


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _csi(r: dict[str, Any]) -> str:
    """The channel and the legitimate CSI, e.g. ``rayleigh, ls, delay 1 @ 3 km/h`` (``ofdm TDL-A, ...`` per RE)."""
    speed = f" @ {r['speed_kmh']:g} km/h" if r["feedback_delay"] else ""
    phy = "ofdm " if r["phy"] == "ofdm" else ""
    return f"{phy}{r['channel_model']}, {r['estimator']}, delay {r['feedback_delay']}{speed}"


def _t_star(r: dict[str, Any]) -> str:
    """``300``, ``300 keyed`` or ``none``."""
    return "none" if r["t_star"] is None else f"{r['t_star']}{' keyed' if r['self_noise'] == 'keyed' else ''}"


def _best_cell(r: dict[str, Any]) -> str:
    """"35.2 (feature-classifier)", with the image count of an attack run on fewer images."""
    few = f", n={r['n']}" if "legit_acc_on_n" in r else ""
    return f"{_pct(r['attacker_acc'])} ({r['attack']}{few})"


CONDITION_HEAD = "| SNR dB | channel, CSI | n_tx | beam fraction | t* | eve offset dB | eve n_rx | eve corr. |"


def _condition_cells(r: dict[str, Any]) -> list[str]:
    """A row's condition and eavesdropper, as :data:`CONDITION_HEAD`'s cells."""
    return [f"{r['snr_db']:g}", _csi(r), str(r["n_tx"]), f"{r['beam_fraction']:g}",
            _t_star(r), f"{r['eve_offset_db']:g}", str(r["eve_n_rx"]),
            f"{r['eve_correlation']:g}"]


def gap_table(rows: list[dict[str, Any]]) -> str:
    """The secrecy gap per condition and eavesdropper: legitimate accuracy and level, the eavesdropper's level,
    the best attack (which) and the gap in points."""
    lines = [CONDITION_HEAD + " legit % | legit abar_eff | eve abar_eff | best attack % | gap pts |", "|" + "---|" * 13]
    for r in best_rows(rows):
        lines.append("| " + " | ".join([*_condition_cells(r), _pct(r["legit_acc"]), f"{r['legit_abar_eff']:.3f}",
                                        f"{r['eve_abar_eff']:.4f}", _best_cell(r),
                                        f"{100 * r['secrecy_gap']:+.1f}"]) + " |")
    return "\n".join(lines)


def attack_table(rows: list[dict[str, Any]]) -> str:
    """Every attack: its label accuracy, each judge's, their max and spread, PSNR, on how many images."""
    judges = list(dict.fromkeys(j for r in rows for j in r.get("judges", {})))
    lines = [CONDITION_HEAD + " attack | n | label % | judged max % | spread pts | "
             + "".join(f"{j} % | " for j in judges) + "PSNR dB | attacker % |", "|" + "---|" * (15 + len(judges))]
    for r in rows:
        per = r.get("judges", {})
        lines.append("| " + " | ".join([
            *_condition_cells(r), r["attack"], str(r["n"]), _pct(r.get("label_acc")), _pct(r.get("judged_max")),
            "-" if "judged_spread" not in r else f"{100 * r['judged_spread']:.1f}", *(_pct(per.get(j)) for j in judges),
            f"{r['psnr']:.2f}" if "psnr" in r else "-", _pct(r["attacker_acc"])]) + " |")
    return "\n".join(lines)


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' results as one (``diffsem antennas report``): their rows, a row of a later run replacing an
    earlier one for the same condition, eavesdropper and attack; the configs kept as a list. Runs with the same seed
    share each condition's legitimate and transmitter draws, so their eavesdroppers can be compared."""
    rows: dict[tuple, dict[str, Any]] = {}
    for res in results:
        for r in res["rows"]:
            r = {"phy": res["config"].get("phy", "flat"), "self_noise": "random",
                 "channel_model": res["config"]["channel_model"],
                 "speed_kmh": res["config"]["speed_kmh"], **r}
            rows[_key(r) + (r["eve_offset_db"], r["eve_n_rx"], r["eve_correlation"], r["attack"])] = r
    return {"config": {"merged": [res["config"] for res in results]}, "rows": list(rows.values())}


def write_antenna_report(res: dict[str, Any], out: Path) -> dict[str, Path]:
    """``antennas.json``, ``antennas.md`` (the gap table, then every attack) and the two plots (each where its axis
    was swept); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "antennas.json", "md": out / "antennas.md", "beam": out / "acc_vs_beam_fraction.png",
             "eve_rx": out / "gap_vs_eve_antennas.png"}
    paths["json"].write_text(json.dumps(to_json(res), indent=2, allow_nan=False) + "\n")
    paths["md"].write_text("## Secrecy gap (best attack per eavesdropper)\n\n" + gap_table(res["rows"])
                           + "\n\n## Every attack\n\n" + attack_table(res["rows"]) + "\n")
    drawn = {"beam": plot_beam_fraction(res["rows"], paths["beam"]), "eve_rx": plot_eve_antennas(res["rows"], paths["eve_rx"])}
    return {name: path for name, path in paths.items() if drawn.get(name, True)}


def _label(r: dict[str, Any], *skip: str) -> str:
    parts = {"snr": f"{r['snr_db']:g} dB", "csi": _csi(r), "n_tx": f"n_tx {r['n_tx']}",
             "beta": f"beta {r['beam_fraction']:g}", "t": f"t* {_t_star(r)}"}
    return ", ".join(v for k, v in parts.items() if k not in skip)


def plot_beam_fraction(rows: list[dict[str, Any]], path: Path) -> bool:
    """Legitimate (solid) and best-attack (dashed) accuracy against the beam's power fraction, per (SNR, CSI, n_tx,
    t*), for the single-antenna eavesdropper at equal average SNR, uncorrelated; False (nothing drawn) unless some
    condition has several beam fractions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def group(r: dict[str, Any]) -> tuple:
        return _key(r)[:8] + (r["t_star"],)  # every setting but the beam fraction

    mine = [r for r in best_rows(rows) if (r["eve_offset_db"], r["eve_n_rx"], r["eve_correlation"]) == (0.0, 1, 0.0)
            and r["null_space"]]
    groups = [g for g in dict.fromkeys(group(r) for r in mine) if sum(group(r) == g for r in mine) > 1]
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, g in enumerate(groups):
        pts = sorted((r for r in mine if group(r) == g), key=lambda r: r["beam_fraction"])
        x = [r["beam_fraction"] for r in pts]
        ax.plot(x, [100 * r["legit_acc"] for r in pts], "-o", ms=3, color=f"C{i}", label=_label(pts[0], "beta"))
        ax.plot(x, [100 * r["attacker_acc"] for r in pts], "--s", ms=3, color=f"C{i}")
    ax.set_xscale("log")
    ax.set_xlabel("beam power fraction (rest: null-space self-noise)")
    ax.set_ylabel("accuracy % (solid: legitimate, dashed: best attack)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_eve_antennas(rows: list[dict[str, Any]], path: Path) -> bool:
    """The secrecy gap against the eavesdropper's receive antennas, per condition (equal average SNR, uncorrelated);
    False (nothing drawn) unless some condition has eavesdroppers with several antenna counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in best_rows(rows) if (r["eve_offset_db"], r["eve_correlation"]) == (0.0, 0.0)]
    keys = [k for k in dict.fromkeys(_key(r) for r in mine) if sum(_key(r) == k for r in mine) > 1]
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, key in enumerate(keys):
        pts = sorted((r for r in mine if _key(r) == key), key=lambda r: r["eve_n_rx"])
        ax.plot([r["eve_n_rx"] for r in pts], [100 * r["secrecy_gap"] for r in pts], "-o", ms=3, color=f"C{i % 10}",
                label=_label(pts[0]))
    ax.set_xscale("log", base=2)
    ax.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("eavesdropper receive antennas (LMMSE combiner)")
    ax.set_ylabel("secrecy gap vs best attack (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
