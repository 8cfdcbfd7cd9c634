"""Training attacks (``diffsem attack train``) and the attack evaluation (``diffsem attack eval``).

The evaluation sends test images through the frame path (:func:`diffsem.framepath.send`) with random or keyed
self-noise for each t*, to a legitimate link at ``snr_db`` and an eavesdropper link at ``snr_db + offset`` (AWGN, or
the fading given), each with its own generator. The legitimate accuracy is the receiver's (``direct`` or ``denoise``
decoding); each attack's accuracy is its own label guesses, or the panel of judges' labels of its reconstructions
(every judge, their max and spread; :mod:`diffsem.judges`), with PSNR and SSIM (torchmetrics) against the originals.
Secrecy gap = legitimate accuracy minus the best attacker's accuracy, whose judged figure is the max over judges
unless ``gap_judge`` names one judge.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from diffsem.attacks.base import Attack, attack_checkpoint_path, attack_class, load_attack, save_attack
from diffsem.attacks.builtin import query_encoder
from diffsem.bundle import encode_all
from diffsem.checkpoints import code_version
from diffsem.config import FadingName
from diffsem.data import load_split, transmitter_split
from diffsem.diffusion import diffuse
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, KeyedSender, Sent, View, condition_links, eve_role, send
from diffsem.judges import ABSTAIN, ABSTAINING, JudgePanel
from diffsem.keyed import NonceSource
from diffsem.leakage import summarise
from diffsem.neighbours import MEASURES, Neighbours
from diffsem.pipeline import PublicHeader
from diffsem.samplers import attacker_levels
from diffsem.seeds import derive_seed
from diffsem.sweep import from_json, seed_cell, to_json

SELF_NOISE_MODES = ("random", "keyed")
EVAL_KEY = bytes(range(32))  # evaluation only: a fixed demo key, and nonces derived from the seed, so runs reproduce


TRAFFIC_FRAMES = 6000  # intercepted frames an attack without an oracle learns from


def intercepted_traffic(bundle: Any, data_dir: Path | None = None, n: int = TRAFFIC_FRAMES, seed: int = 0,
                        train_snr_db: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The frames a passive eavesdropper collects before it attacks (``needs_traffic`` attacks learn from them):
    ``n`` images of the transmitter's split (its users' images, which no attacker sees), encoded by the transmitter
    and received at the levels attacks train on (:func:`~diffsem.samplers.attacker_levels`, or one link SNR). The
    attacker gets the noisy latents z (n, k) and their levels abar_eff (n,) (public header plus its own SNR), never
    the images or their labels."""
    images, _ = load_split(bundle.cfg.dataset, "train", data_dir)
    tx, _ = transmitter_split(len(images), seed=0)
    gen = torch.Generator().manual_seed(derive_seed(seed, "traffic"))
    sent = images[tx[torch.randperm(len(tx), generator=gen)[:n]]]
    s = encode_all(bundle, sent).cpu()  # the transmitter transmitting its own images, not a query
    levels = attacker_levels(len(s), bundle.abar, gen, train_snr_db)
    return diffuse(s, levels, gen), levels


def train_attack(bundle: Any, name: str, out_root: Path, data_dir: Path | None = None, n_aux: int | None = 6000,
                 epochs: int = 3, seed: int = 0, **options: Any) -> tuple[Attack, Path, dict[str, float]]:
    """Fit ``name`` on the attacker's auxiliary split (and, for an attack that ``needs_traffic``, on
    :func:`intercepted_traffic`) and write ``out_root/attacks/<name>.safetensors`` + card."""
    cls = attack_class(name)
    if not cls.trainable:
        raise ConfigError(f"attack {name!r} has nothing to train")
    if cls.weights_of:
        raise ConfigError(f"attack {name!r} runs with {cls.weights_of!r}'s weights: train {cls.weights_of!r}")
    att = cls(bundle, **options)
    images, labels = load_split(bundle.cfg.dataset, "train", data_dir)
    _, aux = transmitter_split(len(images), seed=0)
    if n_aux:
        aux = aux[:n_aux]
    extra: dict[str, Any] = {}
    card: dict[str, Any] = {}
    if cls.needs_traffic:
        extra["traffic"] = intercepted_traffic(bundle, data_dir, seed=seed, train_snr_db=options.get("train_snr_db"))
        card["traffic"] = {"frames": TRAFFIC_FRAMES, "images": "transmitter split (never the attacker's)",
                           "levels": "attacker_levels" if options.get("train_snr_db") is None
                           else f"{options['train_snr_db']} dB link"}
    t0 = time.time()
    metrics = att.fit(images[aux], labels[aux], epochs=epochs, seed=seed, **extra)
    path = attack_checkpoint_path(out_root, name)
    save_attack(att, path, {"train_seconds": round(time.time() - t0, 1), "metrics": metrics, "n_aux": len(aux),
                            "epochs": epochs, "seed": seed, "threat_model": cls.threat_model,
                            "dataset": {"name": bundle.cfg.dataset, "split": "aux"}, **card})
    return att, path, metrics


def _psnr_ssim(rec: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    rec, ref = rec.float().clamp(0, 1), ref.float()
    return (float(peak_signal_noise_ratio(rec, ref, data_range=1.0)),
            float(structural_similarity_index_measure(rec, ref, data_range=1.0)))


def run_attack(att: Attack, z: torch.Tensor, level: torch.Tensor, header: PublicHeader, batch: int = 256):
    labels, recs = [], []
    for i in range(0, len(z), batch):
        sl = slice(i, i + batch)
        lab, rec = att.attack(z[sl], level[sl], header.rows(sl))
        labels.append(lab)
        recs.append(rec)
    lab = None if labels[0] is None else torch.cat(labels)
    rec = None if recs[0] is None else torch.cat(recs)
    return lab, rec


def _send_setting(bundle: Any, s: torch.Tensor, snr_db: float, mode: str, t_star: int | None,
                  offsets: Sequence[float], fading: FadingName, seed: int, phy: dict[str, Any] | None = None) -> Sent:
    """One setting's frames through the frame path: the legitimate link and one link per eavesdropper offset (``inf``:
    a noiseless tap), each with its own generator seeded by (seed, role, SNR, t*), so random and keyed self-noise see
    the same channel noise and adding an offset moves no other listener's noise. ``phy``: LinkConfig PHY fields of
    every link (an ofdm eavesdropper gets its own, independent channel realisation from its own generator)."""
    links, gens = condition_links(bundle.cfg.k, seed, snr_db, t_star, offsets, {"fading": fading, **(phy or {})})
    return send(s, t_star, bundle.abar, links, gens, keyed=eval_keyed(seed, snr_db, t_star) if mode == "keyed" else None)


def eval_keyed(seed: int, snr_db: float, t_star: int | None) -> KeyedSender:
    """Keyed self-noise as an offline evaluation keys it: the fixed evaluation key, nonces from (seed, SNR, t*)."""
    return KeyedSender(EVAL_KEY, NonceSource(derive_seed(seed, "nonce", snr_db, t_star).to_bytes(8, "big")))


def judged(decided: dict[str, torch.Tensor], labels: torch.Tensor, attack: str, gap_judge: str = "max") -> dict[str, Any]:
    """A row's judge fields from each judge's labels (N,) of an attack's reconstructions of images labelled (N,):
    ``judges`` (each judge's accuracy), ``judged_max``, ``judged_spread`` and ``judged_acc``, the figure the gap uses
    (the max, or ``gap_judge``'s accuracy). With the abstaining judge in the panel, ``recognisable`` (its accuracy:
    the confidently recognisable leakage) and ``abstained`` (the share it could not tell) go beside them."""
    per = {name: float((lab == labels).float().mean()) for name, lab in decided.items()}
    summary = summarise(per)
    if gap_judge != "max" and gap_judge not in per:
        raise ConfigError(f"gap judge {gap_judge!r} is not in the panel for {attack!r} ({', '.join(per)}); "
                          "use max or one of them")
    out = {"judges": per, "judged_max": summary["max"], "judged_spread": summary["spread"],
           "judged_acc": summary["max"] if gap_judge == "max" else per[gap_judge]}
    if ABSTAINING in decided:
        out |= {"recognisable": per[ABSTAINING], "abstained": float((decided[ABSTAINING] == ABSTAIN).float().mean())}
    return out


def _attack_rows(attacks: dict[str, Attack], panel: JudgePanel, eve: View, header: PublicHeader,
                 images: torch.Tensor, labels: torch.Tensor, base: dict[str, Any], gap_judge: str,
                 neighbours: Neighbours | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every attack on one eavesdropper's view: a row each (with the secrecy gap), and per reconstruction attack
    its reconstructions with every judge's and judge-free measure's labels of them."""
    rows, recs = [], {}
    for name, att in attacks.items():
        t0 = time.time()
        lab, rec = run_attack(att, eve.z, eve.abar_eff, header)
        r = {**base, "attack": name, "threat_model": att.threat_model, "seconds": round(time.time() - t0, 2)}
        if lab is not None:
            r["label_acc"] = float((lab == labels).float().mean())
        if rec is not None:
            decided = panel.labels(rec, name)
            r |= judged(decided, labels, name, gap_judge)
            r["psnr"], r["ssim"] = _psnr_ssim(rec, images)
            if neighbours is not None:
                near = neighbours.labels(rec)
                r["neighbours"] = {m: float((v == labels).float().mean()) for m, v in near.items()}
                decided = {**decided, **near}
            recs[name] = (rec, decided)
        r["attacker_acc"] = max(r.get("label_acc", 0.0), r.get("judged_acc", 0.0))
        rows.append(r)
    best = max((r["attacker_acc"] for r in rows), default=0.0)
    for r in rows:
        r["secrecy_gap"] = base["legit_acc"] - best
    return rows, recs


ATTACK_AXES = ("snr_db", "self_noise", "t_star", "eve_offset_db", "attack")  # a cell's coordinates (diffsem.sweep)


@dataclass
class AttackContext:
    """What every cell of one attack evaluation shares: the models, the attacks, the judges, the queried latents
    s (N, k) of the test images (N, 1, 28, 28) and their labels (N,), and the settings that are not grid axes."""

    bundle: Any
    attacks: dict[str, Attack]
    panel: JudgePanel
    receiver: Any
    s: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    seed: int = 0
    decode: str = "direct"
    fading: FadingName = "none"
    phy: dict[str, Any] = field(default_factory=dict)
    gap_judge: str = "max"
    neighbours: Neighbours | None = None  # the judge-free measures, when asked for
    keep: int = 0  # reconstructions each cell returns with every reader's labels, for judging pools (0: none)
    legit: dict[tuple[Any, ...], dict[str, float]] = field(default_factory=dict)  # per setting: its cells share it


def attack_context(bundle: Any, attacks: dict[str, Attack], images: torch.Tensor, labels: torch.Tensor, seed: int = 0,
                   decode: str = "direct", fading: FadingName = "none", phy: dict[str, Any] | None = None,
                   panel: JudgePanel | None = None, gap_judge: str = "max", neighbours: Neighbours | None = None,
                   keep: int = 0) -> AttackContext:
    from diffsem.receiver import DiffusionReceiver

    return AttackContext(bundle, attacks, panel or JudgePanel.of_bundle(bundle), DiffusionReceiver(bundle),
                         query_encoder(bundle, images), images, labels, seed, decode, fading, phy or {}, gap_judge,
                         neighbours, keep)


def attack_cells(snrs_db: Sequence[float], self_noise: Sequence[str], t_stars: Sequence[int | None],
                 offsets: Sequence[float], attacks: Sequence[str]) -> list[tuple[Any, ...]]:
    """The evaluation's cells (:data:`ATTACK_AXES`), in report order; each value checked."""
    if not all(math.isfinite(v) for v in snrs_db) or any(math.isnan(o) or o == -math.inf for o in offsets):
        raise ConfigError(f"SNRs {list(snrs_db)} must be finite and offsets {list(offsets)} finite or inf "
                          "(a noiseless eavesdropper channel)")
    if unknown := sorted(set(self_noise) - set(SELF_NOISE_MODES)):
        raise ConfigError(f"self-noise {unknown}: use {' and/or '.join(SELF_NOISE_MODES)}")
    return [(snr, mode, t, off, name) for snr in snrs_db for mode in self_noise for t in t_stars for off in offsets
            for name in attacks]


@torch.no_grad()
def attack_cell(ctx: AttackContext, cell: tuple[Any, ...]) -> dict[str, Any]:
    """One attack on one eavesdropper link at one setting: its row (no secrecy gap yet: that needs every attack of
    the setting, :func:`assemble_attacks`), its first 8 reconstructions and, with ``ctx.keep``, its first
    ``keep`` reconstructions with every judge's and measure's labels of them. The setting's frames are sent over the
    legitimate link and this eavesdropper's link only; each link's generator is seeded by (seed, role, SNR, t*),
    so its draws are those of the whole setting's."""
    snr_db, mode, t_star, off, name = cell
    seed_cell(ctx.seed, cell)
    sent = _send_setting(ctx.bundle, ctx.s, snr_db, mode, t_star, [off], ctx.fading, ctx.seed, ctx.phy)
    legit, eve = sent.views[LEGIT], sent.views[eve_role(off)]
    if cell[:3] not in ctx.legit:  # the legitimate link's draws are the setting's, whatever the offset or attack
        dev = ctx.bundle.device
        decided = ctx.receiver.decode(legit.z.to(dev), legit.abar_eff.to(dev), ctx.decode).labels.cpu()
        ctx.legit[cell[:3]] = {"legit_acc": float((decided == ctx.labels).float().mean()),
                               "legit_abar_eff": float(legit.abar_eff.mean())}
    base = {"self_noise": mode, "t_star": t_star, "snr_db": snr_db, "eve_offset_db": off, **ctx.legit[cell[:3]],
            "eve_abar_eff": float(eve.abar_eff.mean())}
    rows, recs = _attack_rows({name: ctx.attacks[name]}, ctx.panel, eve, sent.header, ctx.images, ctx.labels, base,
                              ctx.gap_judge, ctx.neighbours)
    out: dict[str, Any] = {"row": {k: v for k, v in rows[0].items() if k != "secrecy_gap"}}
    if name in recs:
        rec, decided = recs[name]
        out["gallery"] = rec[:8].tolist()
        if ctx.keep:
            out["kept"] = {"rec": rec[:ctx.keep].tolist(), "labels": {k: v[:ctx.keep].tolist() for k, v in decided.items()}}
    return out


def assemble_attacks(ctx: AttackContext, axes: Sequence[Sequence[Any]], results: dict[tuple[Any, ...], dict[str, Any]],
                     seconds: float) -> dict[str, Any]:
    """The evaluation's results from every cell's (in :func:`attack_cells` order, whose arguments are ``axes``): rows
    with their secrecy gap (legitimate accuracy minus the best attack's at that setting and offset), the gallery (the
    first SNR and offset) and the config."""
    best: dict[tuple[Any, ...], float] = {}
    for c, r in results.items():
        best[c[:4]] = max(best.get(c[:4], 0.0), r["row"]["attacker_acc"])
    rows = [{**r["row"], "secrecy_gap": r["row"]["legit_acc"] - best[c[:4]]} for c, r in results.items()]
    snrs, modes, t_stars, offsets, names = (list(a) for a in axes)
    gallery = {f"{c[4]} | {c[1]} t*={c[2]}": torch.tensor(r["gallery"]) for c, r in results.items()
               if "gallery" in r and c[0] == snrs[0] and c[3] == offsets[0]}
    b = ctx.bundle
    config = {"dataset": b.cfg.dataset, "model_id": b.model_id, "n": len(ctx.images), "snrs_db": snrs,
              "self_noise": modes, "t_stars": t_stars, "eve_offsets_db": offsets, "seed": ctx.seed,
              "decode": ctx.decode, "fading": ctx.fading, "phy": ctx.phy, "attacks": names,
              "code_version": code_version(), "judges": {a: ctx.panel.names(a) for a in names},
              "gap_judge": ctx.gap_judge, "threat_models": {a: ctx.attacks[a].threat_model for a in names},
              "neighbours": None if ctx.neighbours is None else {"k": ctx.neighbours.k,
                                                                 "references": len(ctx.neighbours.refs),
                                                                 "measures": list(MEASURES)},
              "seconds": round(seconds, 1)}
    res = {"config": config, "rows": rows, "gallery": gallery, "originals": ctx.images[:8]}
    if ctx.keep:
        res["kept"] = [(i, torch.tensor(r["kept"]["rec"]), {k: torch.tensor(v) for k, v in r["kept"]["labels"].items()})
                       for i, r in enumerate(results.values()) if "kept" in r]
    return res


def evaluate_attacks(bundle: Any, attacks: dict[str, Attack], images: torch.Tensor, labels: torch.Tensor,
                     t_stars: list[int | None], offsets: Sequence[float], snrs_db: Sequence[float] = (20.0,),
                     self_noise: tuple[str, ...] = ("random", "keyed"), seed: int = 0,
                     decode: str = "direct", fading: FadingName = "none", phy: dict[str, Any] | None = None,
                     panel: JudgePanel | None = None, gap_judge: str = "max", neighbours: Neighbours | None = None,
                     keep: int = 0) -> dict[str, Any]:
    """Every attack at every (legitimate SNR dB, self-noise mode, t* (None: no self-noise), eavesdropper offset dB),
    in this process (``diffsem attack eval --executor`` runs the same cells through :mod:`diffsem.sweep`).

    images (N, 1, 28, 28) in [0, 1], labels (N,). An offset of ``inf`` is a noiseless eavesdropper channel. Each row
    has the legitimate accuracy, the attack's label accuracy and/or each judge's accuracy of its reconstructions
    (``panel``; default: the bundle's judge alone) with their max and spread, PSNR/SSIM of reconstructions, and the
    secrecy gap (legitimate accuracy minus the best attack's at that setting; judged by the max over judges, or by
    ``gap_judge``). Each row names its attack's threat model; with ``neighbours``, reconstruction rows also carry the
    judge-free accuracies (``neighbours``: k-NN and SSIM-NN, :mod:`diffsem.neighbours`). ``keep`` > 0 returns each
    reconstruction row's first ``keep`` reconstructions too (``kept``: (row index, reconstructions, every judge's and
    measure's labels)), for judging pools (:func:`write_pools`). The same seed gives the same rows."""
    started = time.time()
    axes = (snrs_db, self_noise, t_stars, offsets, list(attacks))
    cells = attack_cells(*axes)
    ctx = attack_context(bundle, attacks, images, labels, seed, decode, fading, phy, panel, gap_judge, neighbours, keep)
    results = {c: attack_cell(ctx, c) for c in tqdm(cells, desc="attack cells", unit="cell")}
    return assemble_attacks(ctx, axes, results, time.time() - started)


def write_pools(res: dict[str, Any], folder: Path, labels: torch.Tensor, checks: torch.Tensor,
                check_labels: torch.Tensor) -> list[Path]:
    """One judging pool (:mod:`diffsem.pools`) per reconstruction row of an evaluation run with ``keep``: its
    reconstructions of the first ``keep`` test images labelled ``labels`` (N,), every judge's and measure's labels
    of them, and the clean attention-check images ``checks`` (M, 1, 28, 28) with ``check_labels`` (M,). The card's
    figures are the row's, over all N images."""
    from diffsem.pools import CLASS_NAMES, pool_name, write_pool

    cfg = res["config"]
    paths = []
    for idx, rec, decided in res["kept"]:
        row, size = res["rows"][idx], len(rec)
        figures = {k: row[k] for k in ("judges", "judged_max", "judged_spread", "recognisable", "abstained",
                                       "neighbours", "psnr", "ssim", "legit_acc") if k in row}
        card = {"dataset": cfg["dataset"], "classes": CLASS_NAMES[cfg["dataset"]], "attack": row["attack"],
                "threat_model": row["threat_model"], "model_id": cfg["model_id"], "code_version": cfg["code_version"],
                "condition": {k: row[k] for k in ("snr_db", "self_noise", "t_star", "eve_offset_db")},
                "seed": cfg["seed"], "images": f"the first {size} test images",
                "check_images": f"the last {len(check_labels)} test images",
                "figures": to_json({**figures, "over_images": len(labels)})}
        paths.append(write_pool(folder, pool_name(cfg["dataset"], row), rec.numpy(), labels[:size].numpy(),
                                {k: v.numpy() for k, v in decided.items()}, checks.numpy(),
                                check_labels.numpy(), card))
    return paths


def read_attack_results(path: Path) -> dict[str, Any]:
    """An ``attacks.json`` as floats: reads the strict form (``"inf"``) and the older one (bare ``Infinity``)."""
    return from_json(json.loads(Path(path).read_text()))


def write_attack_report(res: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "attacks.json", "md": out / "attacks.md", "gallery": out / "attack_gallery.png",
             "scatter": out / "attack_acc_vs_psnr.png", "gap": out / "secrecy_gap.png"}
    strict = to_json({k: v for k, v in res.items() if k not in ("gallery", "originals", "kept")})
    paths["json"].write_text(json.dumps(strict, indent=2, allow_nan=False) + "\n")
    paths["md"].write_text("## Secrecy gap (best attack per setting)\n\n" + gap_table(res["rows"])
                           + "\n\n## Every attack\n\n" + markdown_table(res["rows"]) + "\n")
    _gap_plot(res["rows"], paths["gap"])
    g = res["gallery"]
    rows = [("original", res["originals"])] + list(g.items())
    fig, axes = plt.subplots(len(rows), 8, figsize=(8, 1.1 * len(rows)), squeeze=False)
    for i, (title, imgs) in enumerate(rows):
        for j in range(8):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[i][0].set_title(title, fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(paths["gallery"], dpi=110)
    plt.close(fig)
    _scatter_plot(res["rows"], paths["scatter"])
    return paths


def _scatter_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Judged accuracy against PSNR per reconstruction attack: the max over judges, a bar down to the min."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for i, name in enumerate(sorted({r["attack"] for r in rows if "psnr" in r})):
        mine = [r for r in rows if r["attack"] == name and "psnr" in r]
        ax.errorbar([r["psnr"] for r in mine], [r.get("judged_max", r["judged_acc"]) for r in mine],
                    yerr=[[r.get("judged_spread", 0.0) for r in mine], [0.0] * len(mine)], fmt="o", ms=3,
                    color=f"C{i}", elinewidth=0.8, capsize=0, label=f"{name} ({mine[0].get('threat_model', '?')})")
    ax.set_xlabel("PSNR (dB)")
    ax.set_ylabel("judged accuracy (max over judges; bar: down to the min)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _offset(off: float) -> str:
    return "noiseless" if off == float("inf") else f"{off:+g} dB"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _gap_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Secrecy gap (points) against t*, one panel per self-noise mode, one line per (SNR, eavesdropper offset)."""
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(r["self_noise"] for r in rows))
    snrs = list(dict.fromkeys(r["snr_db"] for r in rows))  # colour per SNR, line style per offset, in every panel
    offs = list(dict.fromkeys(r["eve_offset_db"] for r in rows))
    fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 3.8), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes, strict=True):
        mine = [r for r in rows if r["self_noise"] == mode and r["t_star"] is not None]
        for snr, off in dict.fromkeys((r["snr_db"], r["eve_offset_db"]) for r in mine):
            pts = {r["t_star"]: 100 * r["secrecy_gap"] for r in mine if (r["snr_db"], r["eve_offset_db"]) == (snr, off)}
            ts = sorted(pts)
            ax.plot(ts, [pts[t] for t in ts], marker="o", ms=3, color=f"C{snrs.index(snr)}",
                    linestyle=("-", "--", ":", "-.")[offs.index(off) % 4], label=f"legit {snr:g} dB, eve {_offset(off)}")
        ax.set_title(f"{mode} self-noise", fontsize=9)
        ax.set_xlabel("t*")
        ax.axhline(0, color="grey", lw=0.5)
    axes[0][0].set_ylabel("secrecy gap vs best attack (points)")
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def judge_names(rows: list[dict[str, Any]]) -> list[str]:
    """Every judge that scored some row, in first-seen order."""
    return list(dict.fromkeys(j for r in rows for j in r.get("judges", {})))


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Every row: accuracies in %, PSNR in dB, gap in points; the attack's threat model; the judged accuracy as the
    max over the panel, its spread in points, then each judge's accuracy, then the judge-free measures where the
    run had them."""
    judges = judge_names(rows)
    measures = list(dict.fromkeys(m for r in rows for m in r.get("neighbours", {})))
    head = ("| SNR dB | self-noise | t* | eve offset dB | attack | threat model | legit % | label % | judged max % | "
            "spread pts | " + "".join(f"{j} % | " for j in judges) + "".join(f"{m} % | " for m in measures)
            + "PSNR dB | SSIM | gap pts |")
    lines = [head, "|" + "---|" * (13 + len(judges) + len(measures))]
    for r in rows:
        per = r.get("judges", {})
        spread = r.get("judged_spread")
        cells = [f"{r['snr_db']:g}", r["self_noise"], "none" if r["t_star"] is None else str(r["t_star"]),
                 f"{r['eve_offset_db']:g}", r["attack"], r.get("threat_model", "-"), _pct(r["legit_acc"]),
                 _pct(r.get("label_acc")), _pct(r.get("judged_max", r.get("judged_acc"))),
                 "-" if spread is None else f"{100 * spread:.1f}", *(_pct(per.get(j)) for j in judges),
                 *(_pct(r.get("neighbours", {}).get(m)) for m in measures), f"{r['psnr']:.2f}" if "psnr" in r else "-",
                 f"{r['ssim']:.3f}" if "ssim" in r else "-", f"{100 * r['secrecy_gap']:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gap_table(rows: list[dict[str, Any]]) -> str:
    """One line per (SNR, self-noise, t*): legitimate accuracy, then per eavesdropper offset the best attack's
    accuracy (which attack, its threat model) and the secrecy gap in points."""
    offsets = sorted({r["eve_offset_db"] for r in rows}, reverse=True)
    head = "| SNR dB | self-noise | t* | legit % | " + " | ".join(f"best attack, eve {_offset(o)} | gap" for o in offsets) + " |"
    lines = [head, "|" + "---|" * (4 + 2 * len(offsets))]
    keys = list(dict.fromkeys((r["snr_db"], r["self_noise"], r["t_star"]) for r in rows))
    for snr, mode, t in keys:
        group = [r for r in rows if (r["snr_db"], r["self_noise"], r["t_star"]) == (snr, mode, t)]
        cells = [f"{snr:g}", mode, "none" if t is None else str(t), _pct(group[0]["legit_acc"])]
        for o in offsets:
            at = [r for r in group if r["eve_offset_db"] == o]
            best = max(at, key=lambda r: r["attacker_acc"])
            cells += [f"{_pct(best['attacker_acc'])} ({best['attack']}, {best.get('threat_model', '-')})",
                      f"{100 * best['secrecy_gap']:+.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_attacks(bundle: Any, names: list[str], root: Path, transmitter_checkpoint: Path | None = None,
                 transmitter_options: dict[str, Any] | None = None) -> dict[str, Attack]:
    """The named attacks, ready to run, with their weights from ``root/attacks``; ``transmitter_options`` go to the
    attacks that read the transmitter's checkpoint (e.g. the white-box attack's ``steps``)."""
    out = {}
    for name in names:
        opts = (transmitter_options or {}) if attack_class(name).needs_transmitter else {}
        out[name] = load_attack(name, bundle, checkpoint_root=root, transmitter_checkpoint=transmitter_checkpoint, **opts)
    return out
