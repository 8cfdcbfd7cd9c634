"""Turn an evaluation's results dict into results.json, a Markdown table, PNG plots and the headline checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from diffsem.config import parse_result_key, result_key

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODE_LABELS = {"plain": "plain", "direct": "self-noise + direct", "denoise": "DiffSem denoise",
               "selfref": "DiffSem selfref"}
FAMILY_LABELS = {"matched": "", "channel": "[channel clf] "}


def _label(key: str) -> str:
    family, mode = parse_result_key(key)
    return FAMILY_LABELS.get(family, family + " ") + MODE_LABELS.get(mode, mode)


def _columns(ec: dict[str, Any]) -> list[str]:
    """Result keys in table order: per classifier family, plain then each mode."""
    return [result_key(f, m) for f in ec["classifiers"] for m in ["plain", *ec["modes"]]]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def _plain(rows: list[dict[str, Any]], family: str = "matched") -> dict[float, float]:
    return {r["snr_db"]: r["acc"][result_key(family, "plain")] for r in rows if r["t_star"] is None}


def _by_t(rows: list[dict[str, Any]], t_star: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["t_star"] == t_star]


def headline(res: dict[str, Any]) -> dict[str, Any]:
    """The headline checks, computed from the rows (never typed in by hand), per classifier family."""
    rows, ec = res["rows"], res["config"]
    t0 = ec["default_t_star"]
    diff_modes = [m for m in ec["modes"] if m != "direct"]
    out: dict[str, Any] = {"clean_accuracy": res["clean_accuracy"], "default_t_star": t0, "families": {}}
    for fam in ec["classifiers"]:
        h: dict[str, Any] = {}
        band = [r for r in _by_t(rows, t0) if 0 <= r["snr_db"] <= 20]
        if band and diff_modes:
            best = [max(r["acc"][result_key(fam, m)] for m in diff_modes) for r in band]
            h["default_band"] = {"snrs": [r["snr_db"] for r in band], "best_diffsem": best,
                                 "min": min(best), "spread_points": 100 * (max(best) - min(best))}
        gains = []
        for r in rows:
            if r["t_star"] is None or not diff_modes or r["acc"][result_key(fam, "direct")] > 0.85:
                continue
            best_mode = max(diff_modes, key=lambda m, r=r: r["acc"][result_key(fam, m)])
            direct, best = r["acc"][result_key(fam, "direct")], r["acc"][result_key(fam, best_mode)]
            gains.append({"snr_db": r["snr_db"], "t_star": r["t_star"], "direct": direct, "best_mode": best_mode,
                          "best": best, "gain_points": 100 * (best - direct)})
        h["diffusion_gain_where_direct_le_85"] = sorted(gains, key=lambda g: -g["gain_points"])[:5]
        out["families"][fam] = h
    return out


def _phy_text(phy: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in phy.items())


def _aging_lines(res: dict[str, Any]) -> list[str]:
    """The CSI aging table: accuracy (%) per UE speed (rows) and feedback delay (columns), per SNR and system."""
    aging = res.get("aging") or []
    if not aging:
        return []
    ec = res["config"]
    delays = sorted({r["feedback_delay"] for r in aging})
    keys = [k for k in _columns(ec) if k in aging[0]["acc"]]
    lines = [f"## CSI aging (t* = {ec['default_t_star']}, feedback delay in frames)", ""]
    for snr in sorted({r["snr_db"] for r in aging}):
        lines += [f"SNR {snr:g} dB:", "", "| speed km/h | " + " | ".join(f"{_label(k)} d={d}" for k in keys for d in delays)
                  + " | " + " | ".join(f"abar_eff d={d}" for d in delays) + " |",
                  "|" + "---|" * (1 + (len(keys) + 1) * len(delays))]
        for v in sorted({r["speed_kmh"] for r in aging}):
            by_d = {r["feedback_delay"]: r for r in aging if r["snr_db"] == snr and r["speed_kmh"] == v}
            lines.append(f"| {v:g} | " + " | ".join(_pct(by_d[d]["acc"][k]) for k in keys for d in delays) + " | "
                         + " | ".join(f"{by_d[d]['abar_eff']:.4f}" for d in delays) + " |")
        lines.append("")
    return lines


def plot_aging(res: dict[str, Any], path: Path) -> None:
    """Accuracy of self-noise + direct against UE speed, one line per feedback delay and SNR."""
    aging = res.get("aging") or []
    fig, ax = plt.subplots(figsize=(6, 4))
    for snr in sorted({r["snr_db"] for r in aging}):
        for d in sorted({r["feedback_delay"] for r in aging}):
            pts = sorted((r["speed_kmh"], 100 * r["acc"]["direct"]) for r in aging
                         if r["snr_db"] == snr and r["feedback_delay"] == d)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{snr:g} dB, delay {d} frame{'s' * (d != 1)}")
    ax.set_xscale("log")
    ax.set_xlabel("UE speed (km/h)")
    ax.set_ylabel("legitimate accuracy, self-noise + direct (%)")
    ax.set_title(f"CSI aging, t* = {res['config']['default_t_star']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(res: dict[str, Any]) -> str:
    ec, rows = res["config"], res["rows"]
    offs = [str(o) for o in ec["eve_offsets"]]
    cols = _columns(ec)
    lines = [f"# DiffSem evaluation: {res['dataset']}, {res['n']} test images, model {res['model_id']}", "",
             f"Clean accuracy (no channel noise): **{_pct(res['clean_accuracy'])}%** (matched classifier); "
             + ", ".join(f"{c}: {_pct(v)}%" for c, v in res.get("clean_accuracy_by_classifier", {}).items())
             + f". Fading: {ec['fading']}. Reverse steps: {ec['steps']} (eta {ec['eta']}); U-Net evaluations per "
             f"image: {res['unet_evals_per_image']}. Code {res['code_version']}, {res['seconds']} s.", "",
             "Columns: receiver accuracy (%) per system; `[channel clf]` = the classifier trained only over the "
             "channel's SNR range (the paper's baseline); `eve` = the core's eavesdropper at that SNR offset; "
             "gap = best legitimate system − eavesdropper, in points.", ""]
    if ec.get("phy"):
        lines += [f"PHY (every link): {_phy_text(ec['phy'])}; deep-fade policy: {ec.get('deep_fade', 'mean')}.", ""]
    plain_by_snr = {r["snr_db"]: r["acc"] for r in rows if r["t_star"] is None}
    for t in sorted({r["t_star"] for r in rows if r["t_star"] is not None}):
        head = "| SNR dB | abar_eff | " + " | ".join(_label(c) for c in cols) + " | " \
               + " | ".join(f"eve {o} dB" for o in offs) + " | gap " + "/".join(offs) + " |"
        lines += [f"## t* = {t} (abar = {res['abar'][str(t)]:.4f})" + (" — default" if t == ec["default_t_star"] else ""),
                  "", head, "|" + "---|" * (3 + len(cols) + len(offs))]
        for r in _by_t(rows, t):
            acc = {**plain_by_snr.get(r["snr_db"], {}), **r["acc"]}
            best = max(r["acc"].values())
            gaps = "/".join(f"{100 * (best - r['eve'][o]):+.1f}" for o in offs)
            lines.append(f"| {r['snr_db']:g} | {r['abar_eff']:.4f} | " + " | ".join(_pct(acc.get(c)) for c in cols)
                         + " | " + " | ".join(_pct(r["eve"][o]) for o in offs) + f" | {gaps} |")
        lines.append("")
    lines += _aging_lines(res)
    h = headline(res)
    lines += ["## Headline checks", "", f"- clean accuracy: {_pct(h['clean_accuracy'])}%"]
    for fam, fh in h["families"].items():
        name = "matched classifier" if fam == "matched" else f"{fam} classifier"
        if "default_band" in fh:
            b = fh["default_band"]
            lines.append(f"- {name}, default t* = {h['default_t_star']}, SNR {b['snrs'][0]:g}..{b['snrs'][-1]:g} dB: "
                         f"best DiffSem min {_pct(b['min'])}%, spread {b['spread_points']:.2f} points")
        if not fh["diffusion_gain_where_direct_le_85"]:
            lines.append(f"- {name}: no swept condition has direct accuracy <= 85%")
        for g in fh["diffusion_gain_where_direct_le_85"]:
            lines.append(f"- {name}, t* = {g['t_star']}, SNR {g['snr_db']:g} dB: direct {_pct(g['direct'])}%, "
                         f"{g['best_mode']} {_pct(g['best'])}% ({g['gain_points']:+.2f} points)")
    return "\n".join(lines) + "\n"


def plot_vs_snr(res: dict[str, Any], path: Path) -> None:
    ec, rows = res["config"], res["rows"]
    ts = sorted({r["t_star"] for r in rows if r["t_star"] is not None})
    cols = min(3, len(ts))
    fig, axes = plt.subplots(-(-len(ts) // cols), cols, figsize=(4.2 * cols, 3.4 * -(-len(ts) // cols)),
                             squeeze=False, sharey=True)
    plain = _plain(rows)
    for ax, t in zip(axes.flat, ts, strict=False):
        sub = _by_t(rows, t)
        snrs = [r["snr_db"] for r in sub]
        ax.plot(list(plain), [100 * v for v in plain.values()], "k--", label="plain (no self-noise)")
        _curves(ax, snrs, sub, ec)
        ax.set_title(f"t* = {t} (abar {res['abar'][str(t)]:.3f})")
        ax.set_xlabel("legitimate SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    for ax in list(axes.flat)[len(ts):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{res['dataset']}: accuracy vs SNR ({res['n']} images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _curves(ax: Any, xs: list[float], sub: list[dict[str, Any]], ec: dict[str, Any]) -> None:
    """One line per receiver column (not the plain system) and per eavesdropper offset, accuracy in % over ``xs``."""
    for key in _columns(ec):
        if not key.endswith("plain"):
            ax.plot(xs, [100 * r["acc"][key] for r in sub], marker="o", ls="-." if ":" in key else "-",
                    label=_label(key))
    for o in ec["eve_offsets"]:
        ax.plot(xs, [100 * r["eve"][str(o)] for r in sub], ":", marker="x", label=f"eavesdropper {o:+g} dB")


def plot_vs_tstar(res: dict[str, Any], path: Path, snr_db: float = 10.0) -> None:
    ec, rows = res["config"], res["rows"]
    snrs = sorted({r["snr_db"] for r in rows})
    snr = min(snrs, key=lambda s: abs(s - snr_db))
    sub = sorted([r for r in rows if r["snr_db"] == snr and r["t_star"] is not None], key=lambda r: r["t_star"])
    ts = [r["t_star"] for r in sub]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    _curves(ax, ts, sub, ec)
    ax.axhline(100 * _plain(rows)[snr], color="k", ls="--", label="plain (no self-noise)")
    ax.set_xlabel("privacy level t* (larger = more self-noise)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{res['dataset']}: accuracy vs t* at legitimate SNR {snr:g} dB")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_eve_view(res: dict[str, Any], path: Path) -> None:
    """Originals (left column) next to the first latent channel the eavesdropper intercepts at each t*."""
    view = res.get("eve_view")
    if not view:
        return
    images, latents, ts = view["images"], view["latents"], view["t_stars"]
    n = len(images)
    fig, axes = plt.subplots(n, 1 + len(ts), figsize=(1.3 * (1 + len(ts)), 1.3 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i], cmap="gray")
        for j, t in enumerate(ts):
            axes[i, 1 + j].imshow(np.asarray(latents[j][i])[:64].reshape(8, 8), cmap="coolwarm")
            if i == 0:
                axes[0, 1 + j].set_title(f"t*={t}", fontsize=8)
    axes[0, 0].set_title("original", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"What the eavesdropper receives (latent, SNR {view['snr_db']:g} dB)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(res: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write every artefact into ``out``; return their paths by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "table": out / "table.md", "acc_vs_snr": out / "acc_vs_snr.png",
             "acc_vs_tstar": out / "acc_vs_tstar.png", "eve_view": out / "eve_view.png"}
    res = {**res, "headline": headline(res)}
    paths["json"].write_text(json.dumps(res, indent=1) + "\n")
    paths["table"].write_text(markdown(res))
    plot_vs_snr(res, paths["acc_vs_snr"])
    plot_vs_tstar(res, paths["acc_vs_tstar"])
    plot_eve_view(res, paths["eve_view"])
    if res.get("aging"):
        paths["aging"] = out / "acc_vs_aging.png"
        plot_aging(res, paths["aging"])
    return paths
