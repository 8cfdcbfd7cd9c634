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
import zlib
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from tqdm import tqdm

from diffsem.bundle import ModelBundle, encode_all
from diffsem.channel import apply_link, draw_fading, equalised_noise
from diffsem.checkpoints import code_version
from diffsem.config import CLASSIFIERS, FadingName, LinkConfig, PrivacyConfig, build
from diffsem.pipeline import PublicHeader, listener_view, self_noise_frame
from diffsem.receiver import DiffusionReceiver

DEFAULT_T_STAR = 300


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

    @field_validator("snrs", "eve_offsets")
    @classmethod
    def _finite(cls, values: list[float]) -> list[float]:
        for v in values:
            LinkConfig(snr_db=v)  # raises with a clear message on NaN/inf
        return values


def result_key(classifier: str, mode: str) -> str:
    """Key of an accuracy in a result row: ``direct`` for the matched classifier, ``channel:direct`` otherwise."""
    return mode if classifier == "matched" else f"{classifier}:{mode}"


def condition_seed(seed: int, *parts: object) -> int:
    """A stable seed per (role, SNR, t*) so every system sees the same noise for the same condition."""
    return (seed * 1_000_003 + zlib.crc32(repr(parts).encode())) % (2**63)


def _eve_accuracy(bundle: ModelBundle, x: torch.Tensor, header: PublicHeader, link: LinkConfig,
                  gen: torch.Generator, labels: torch.Tensor) -> tuple[float, torch.Tensor]:
    out = apply_link(x, link, gen)
    z, level = listener_view(out.latent, header, out.sigma_c2)
    with torch.no_grad():
        hits = (bundle.eavesdropper(z.to(bundle.device), level.to(bundle.device)).argmax(1).cpu() == labels)
    return float(hits.float().mean()), z


def evaluate(bundle: ModelBundle, ec: EvalConfig, images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Run the sweep on ``images`` (N, 1, 28, 28) with ``labels`` (N,); return a JSON-able results dict."""
    for t in [*ec.t_stars, ec.default_t_star]:
        build(PrivacyConfig, t_star=t, num_train_timesteps=bundle.cfg.num_train_timesteps)
    receiver = DiffusionReceiver(bundle, steps=ec.steps, eta=ec.eta)
    abar = bundle.abar
    t_stars = sorted(set(ec.t_stars) | {ec.default_t_star})
    started = time.time()
    s_all = encode_all(bundle, images.to(bundle.device)).cpu()
    clean = receiver.decode_many(s_all, torch.ones(len(s_all)), ["direct"], ec.classifiers)
    rows: list[dict[str, Any]] = []
    conditions = [(snr, t) for snr in ec.snrs for t in [None, *t_stars]]
    samples: dict[int, torch.Tensor] = {}
    for snr, t_star in tqdm(conditions, desc="eval conditions"):
        link = LinkConfig(snr_db=snr, fading=ec.fading)
        row: dict[str, Any] = {"snr_db": snr, "t_star": t_star, "acc": {}, "eve": {}}
        hits: dict[str, int] = {}
        eve_hits = {o: 0.0 for o in ec.eve_offsets}
        abar_sum = 0.0
        gens = {role: torch.Generator().manual_seed(condition_seed(ec.seed, role, snr, t_star))
                for role in ("tx", "legit", *(f"eve{o}" for o in ec.eve_offsets))}
        for i in range(0, len(s_all), ec.batch_size):
            s, y = s_all[i:i + ec.batch_size], labels[i:i + ec.batch_size]
            gain = draw_fading(len(s), link, gens["legit"])  # the block's CSI, fed back before sending
            x, header = self_noise_frame(s, t_star, abar, equalised_noise(snr, gain), gens["tx"])
            out = apply_link(x, link, gens["legit"], gain=gain)
            z, level = listener_view(out.latent, header, out.sigma_c2)
            abar_sum += float(level.sum())
            modes = ["direct"] if t_star is None else ec.modes
            for (clf, mode), res in receiver.decode_many(z, level, modes, ec.classifiers).items():
                key = result_key(clf, "plain" if t_star is None else mode)
                hits[key] = hits.get(key, 0) + int((res.labels == y).sum())
            if t_star is None:
                continue
            for off in ec.eve_offsets:
                acc, z_eve = _eve_accuracy(bundle, x, header, LinkConfig(snr_db=snr + off, fading=ec.fading),
                                           gens[f"eve{off}"], y)
                eve_hits[off] += acc * len(y)
                if i == 0 and off == ec.eve_offsets[0] and snr == max(ec.snrs):
                    samples[t_star] = z_eve[:8]
        n = len(s_all)
        row["abar_eff"] = abar_sum / n
        row["acc"] = {key: h / n for key, h in hits.items()}
        if t_star is not None:
            row["eve"] = {str(o): eve_hits[o] / n for o in ec.eve_offsets}
        rows.append(row)
    eve_view = None
    if samples:
        eve_view = {"t_stars": list(samples), "latents": torch.stack(list(samples.values())).tolist(),
                    "images": images[:8].squeeze(1).tolist(), "snr_db": max(ec.snrs)}
    return {
        "dataset": bundle.cfg.dataset, "model_id": bundle.model_id, "n": len(s_all), "config": ec.model_dump(),
        "model_config": bundle.cfg.model_dump(mode="json"), "code_version": code_version(),
        "clean_accuracy": float((clean[("matched", "direct")].labels == labels).float().mean()),
        "clean_accuracy_by_classifier": {c: float((clean[(c, "direct")].labels == labels).float().mean())
                                         for c in ec.classifiers}, "rows": rows,
        "unet_evals_per_image": {"direct": 0, "denoise": ec.steps, "selfref": ec.steps},
        "seconds": round(time.time() - started, 1), "eve_view": eve_view,
        "abar": {str(t): float(abar[t]) for t in t_stars},
    }
