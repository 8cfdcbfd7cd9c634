"""Offline, paper-style evaluation (``diffsem eval``): accuracy vs legitimate SNR and privacy level t*.

For each SNR and t* it runs, on the same images and noise seeds:

- **plain**: no self-noise, ``direct`` decoding (plain task-oriented semantic communication);
- **self-noise + direct**: the no-diffusion baseline under self-noising;
- **DiffSem denoise** and **DiffSem selfref**: the diffusion receiver;
- the core's **eavesdropper** (a noise-aware classifier trained on intercepted latents of its own auxiliary
  data) at SNR offsets from the legitimate link, seeing the same transmitted frames through its own channel.

Each receiver system runs with two classifiers: ``matched`` (noise-aware, trained at every noise level) and
``channel`` (trained over the channel's SNR range only, never on self-noise: the paper's baseline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from tqdm import tqdm

from diffsem.bundle import ModelBundle, encode_all
from diffsem.checkpoints import code_version
from diffsem.config import CLASSIFIERS, FadingName, LinkConfig, PrivacyConfig, bound_of, build, one_of, result_key
from diffsem.framepath import LEGIT, View, condition_links, eve_role, send
from diffsem.pipeline import DEEP_FADE_POLICIES
from diffsem.receiver import DiffusionReceiver
from diffsem.sweep import seed_cell

DEFAULT_T_STAR = 300
# The LinkConfig settings a sweep may give every link (``EvalConfig.phy``): the channel's, less the ones with their own
# options (SNR, fading) and the seed (derived per role and condition).
CHANNEL_SETTINGS: tuple[str, ...] = tuple(name for name in LinkConfig().channel() if name != "fading")


class EvalConfig(BaseModel):
    """Sweep definition. SNRs in dB; t* values in [0, T); eavesdropper offsets in dB relative to the legit SNR."""

    model_config = ConfigDict(extra="forbid")
    n: int = 2000
    snrs: list[float] = [-10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0]
    t_stars: list[int] = [200, 300, 400, 500, 600]
    eve_offsets: list[float] = [0.0, -5.0, -10.0]
    default_t_star: int = DEFAULT_T_STAR
    steps: int = 1
    eta: float = 0.0
    fading: FadingName = "none"
    seed: int = 0
    batch_size: int = 500
    modes: list[str] = ["direct", "denoise", "selfref"]
    classifiers: list[str] = list(CLASSIFIERS)
    phy: dict[str, Any] = {}  # LinkConfig PHY fields for every link (e.g. {"phy": "ofdm", "speed_kmh": 3.0})
    deep_fade: str = "mean"  # every listener's policy for per-dim levels (diffsem.pipeline.DEEP_FADE_POLICIES)
    aging_speeds: list[float] = []  # CSI aging sweep: UE speeds (km/h) x feedback delays (frames) at aging_snrs
    aging_delays: list[int] = []
    aging_snrs: list[float] = [10.0]

    @field_validator("snrs", "eve_offsets", "aging_snrs")
    @classmethod
    def _finite(cls, values: list[float], info: ValidationInfo) -> list[float]:
        for v in values:  # an SNR's bound (offsets: the same finite dB)
            bound_of(LinkConfig, "snr_db").check(info.field_name, v)
        return values

    @field_validator("phy")
    @classmethod
    def _phy(cls, values: dict[str, Any]) -> dict[str, Any]:
        if extra := sorted(set(values) - set(CHANNEL_SETTINGS)):
            raise ValueError(f"phy settings {extra}: give only the channel's ({', '.join(CHANNEL_SETTINGS)}); snrs, "
                             "fading and seed have their own options, and the live delivery settings apply live only")
        build(LinkConfig, **values)
        return values

    @field_validator("deep_fade")
    @classmethod
    def _policy(cls, v: str) -> str:
        return one_of("deep_fade", v, DEEP_FADE_POLICIES)


def _eve_hits(bundle: ModelBundle, v: View, labels: torch.Tensor) -> int:
    with torch.no_grad():
        return int((bundle.eavesdropper(v.z.to(bundle.device), v.abar_eff.to(bundle.device)).argmax(1).cpu() == labels).sum())


def _condition(bundle: ModelBundle, receiver: DiffusionReceiver, ec: EvalConfig, s_all: torch.Tensor,
               labels: torch.Tensor, snr: float, t_star: int | None,
               phy: dict[str, Any] | None = None) -> tuple[dict[str, Any], torch.Tensor | None]:
    """One (SNR, t*) row, and the first eavesdropper's first 8 latents (for the eve-view figure). ``phy``
    overrides ``ec.phy`` (the CSI aging sweep). Each link is made once per condition, so an ofdm link's channel
    runs on across the batches as one stream of frames."""
    settings = {"fading": ec.fading, **(ec.phy if phy is None else phy)}
    offsets = ec.eve_offsets if t_star is not None else []  # the plain system has no eavesdropper columns
    links, gens = condition_links(bundle.cfg.k, ec.seed, snr, t_star, offsets, settings)
    modes = ["direct"] if t_star is None else ec.modes
    hits: dict[str, int] = {}
    eve_hits = dict.fromkeys(ec.eve_offsets, 0)
    abar_sum, sample = 0.0, None
    for i in range(0, len(s_all), ec.batch_size):
        s, y = s_all[i:i + ec.batch_size], labels[i:i + ec.batch_size]
        sent = send(s, t_star, bundle.abar, links, gens, policy=ec.deep_fade)
        legit = sent.views[LEGIT]
        abar_sum += float(legit.abar_eff.sum())
        for (clf, mode), res in receiver.decode_many(legit.z, legit.abar_eff, modes, ec.classifiers).items():
            key = result_key(clf, "plain" if t_star is None else mode)
            hits[key] = hits.get(key, 0) + int((res.labels == y).sum())
        for o in ec.eve_offsets if t_star is not None else []:
            eve_hits[o] += _eve_hits(bundle, sent.views[eve_role(o)], y)
        if i == 0 and t_star is not None:
            sample = sent.views[eve_role(ec.eve_offsets[0])].z[:8]
    n = len(s_all)
    row: dict[str, Any] = {"snr_db": snr, "t_star": t_star, "acc": {k: h / n for k, h in hits.items()}, "eve": {},
                           "abar_eff": abar_sum / n}
    if t_star is not None:
        row["eve"] = {str(o): eve_hits[o] / n for o in ec.eve_offsets}
    return row, sample


EVAL_AXES = ("kind", "snr_db", "t_star", "speed_kmh", "feedback_delay")  # a cell's coordinates (diffsem.sweep)


@dataclass
class EvalContext:
    """What every cell of one sweep shares: the models, the receiver, the settings and the encoded test images
    s_all (N, k) with their labels (N,)."""

    bundle: ModelBundle
    receiver: DiffusionReceiver
    ec: EvalConfig
    s_all: torch.Tensor
    labels: torch.Tensor


def check_t_stars(bundle: ModelBundle, ec: EvalConfig) -> None:
    """Every t* of the sweep must be a timestep of the bundle's schedule (a one-line ConfigError otherwise)."""
    for t in [*ec.t_stars, ec.default_t_star]:
        build(PrivacyConfig, t_star=t, num_train_timesteps=bundle.cfg.num_train_timesteps)


def eval_context(bundle: ModelBundle, ec: EvalConfig, images: torch.Tensor, labels: torch.Tensor) -> EvalContext:
    """Check the t* values and encode ``images`` (N, 1, 28, 28) once for every cell."""
    check_t_stars(bundle, ec)
    s_all = encode_all(bundle, images.to(bundle.device)).cpu()
    return EvalContext(bundle, DiffusionReceiver(bundle, steps=ec.steps, eta=ec.eta), ec, s_all, labels)


def eval_cells(ec: EvalConfig) -> list[tuple[Any, ...]]:
    """The sweep's cells (:data:`EVAL_AXES`): one per (SNR, t* or None for the plain system), then the CSI aging
    cells at the default t*, one per (SNR in aging_snrs, UE speed, feedback delay) on the ofdm PHY."""
    t_stars = sorted(set(ec.t_stars) | {ec.default_t_star})
    cells: list[tuple[Any, ...]] = [("condition", snr, t, None, None) for snr in ec.snrs for t in [None, *t_stars]]
    return cells + [("aging", snr, ec.default_t_star, v, d)
                    for snr in ec.aging_snrs for v in ec.aging_speeds for d in ec.aging_delays]


def eval_cell(ctx: EvalContext, cell: tuple[Any, ...]) -> dict[str, Any]:
    """One cell's row (and, at the highest SNR, the first eavesdropper's first 8 latents for the eve-view figure);
    its draws are seeded by its coordinates alone, so any process computes the same result."""
    kind, snr, t_star, speed, delay = cell
    ec = ctx.ec
    seed_cell(ec.seed, cell)
    if kind == "aging":
        phy = {**ec.phy, "phy": "ofdm", "speed_kmh": speed, "feedback_delay": delay}
        row, _ = _condition(ctx.bundle, ctx.receiver, ec, ctx.s_all, ctx.labels, snr, t_star, phy)
        return {"row": {**row, "speed_kmh": speed, "feedback_delay": delay}}
    row, sample = _condition(ctx.bundle, ctx.receiver, ec, ctx.s_all, ctx.labels, snr, t_star)
    out: dict[str, Any] = {"row": row}
    if sample is not None and snr == max(ec.snrs):
        out["sample"] = sample.tolist()
    return out


def assemble(ctx: EvalContext, images: torch.Tensor, results: dict[tuple[Any, ...], dict[str, Any]],
             seconds: float) -> dict[str, Any]:
    """The results dict from every cell's result (in :func:`eval_cells` order)."""
    ec, bundle, labels = ctx.ec, ctx.bundle, ctx.labels
    clean = ctx.receiver.decode_many(ctx.s_all, torch.ones(len(ctx.s_all)), ["direct"], ec.classifiers)
    rows = [r["row"] for c, r in results.items() if c[0] == "condition"]
    aging = [r["row"] for c, r in results.items() if c[0] == "aging"]
    samples = {c[2]: r["sample"] for c, r in results.items() if "sample" in r}
    eve_view = None
    if samples:
        eve_view = {"t_stars": list(samples), "latents": list(samples.values()),
                    "images": images[:8].squeeze(1).tolist(), "snr_db": max(ec.snrs)}
    t_stars = sorted(set(ec.t_stars) | {ec.default_t_star})
    return {
        "dataset": bundle.cfg.dataset, "model_id": bundle.model_id, "n": len(ctx.s_all), "config": ec.model_dump(),
        "model_config": bundle.cfg.model_dump(mode="json"), "code_version": code_version(),
        "clean_accuracy": float((clean[("matched", "direct")].labels == labels).float().mean()),
        "clean_accuracy_by_classifier": {c: float((clean[(c, "direct")].labels == labels).float().mean())
                                         for c in ec.classifiers}, "rows": rows,
        "unet_evals_per_image": {"direct": 0, "denoise": ec.steps, "selfref": ec.steps},
        "seconds": round(seconds, 1), "eve_view": eve_view, "aging": aging,
        "abar": {str(t): float(bundle.abar[t]) for t in t_stars},
    }


def evaluate(bundle: ModelBundle, ec: EvalConfig, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Run the sweep on ``images`` (N, 1, 28, 28) with ``labels`` (N,) in this process; return a JSON-able results
    dict (``diffsem eval --executor`` runs the same cells through :mod:`diffsem.sweep`)."""
    started = time.time()
    ctx = eval_context(bundle, ec, images, labels)
    results = {cell: eval_cell(ctx, cell) for cell in tqdm(eval_cells(ec), desc="eval conditions")}
    return assemble(ctx, images, results, time.time() - started)
