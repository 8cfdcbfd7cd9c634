"""Training attacks (``diffsem attack train``) and the attack evaluation (``diffsem attack eval``).

The evaluation sends test images through the transmitter with random or keyed self-noise for each t*, over an
AWGN legitimate link at ``snr_db`` (sigma_c^2 = 10^(-snr/10) per real dimension, DESIGN.md §3) and an
eavesdropper link at ``snr_db + offset``. The legitimate accuracy is the receiver's (``direct`` or ``denoise``
decoding); each attack's accuracy is its own label guesses, or the independent judge's labels of its
reconstructions, with PSNR and SSIM (torchmetrics) against the originals. Secrecy gap = legitimate accuracy minus
the best attacker's accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from diffsem.attacks.base import Attack, attack_checkpoint_path, load_attack, make_attack, save_attack
from diffsem.channel import noise_variance
from diffsem.data import load_split, transmitter_split
from diffsem.errors import ConfigError
from diffsem.keyed import NonceSource
from diffsem.pipeline import keyed_listener_view, keyed_self_noise_frame, listener_view, self_noise_frame

EVAL_KEY = bytes(range(32))  # evaluation only: a fixed demo key so runs are reproducible


def train_attack(bundle: Any, name: str, out_root: Path, data_dir: Path | None = None, n_aux: int | None = 6000,
                 epochs: int = 3, seed: int = 0, **options: Any) -> tuple[Attack, Path, dict[str, float]]:
    """Fit ``name`` on the attacker's auxiliary split and write ``out_root/attacks/<name>.safetensors`` + card."""
    att = make_attack(name, bundle, **options)
    if not att.trainable:
        raise ConfigError(f"attack {name!r} has nothing to train")
    images, labels = load_split(bundle.cfg.dataset, "train", data_dir)
    _, aux = transmitter_split(len(images), seed=0)
    if n_aux:
        aux = aux[:n_aux]
    t0 = time.time()
    metrics = att.fit(images[aux], labels[aux], epochs=epochs, seed=seed)
    path = attack_checkpoint_path(out_root, name)
    save_attack(att, path, {"train_seconds": round(time.time() - t0, 1), "metrics": metrics, "n_aux": len(aux),
                            "epochs": epochs, "seed": seed, "dataset": {"name": bundle.cfg.dataset, "split": "aux"}})
    return att, path, metrics


def _psnr_ssim(rec: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    rec, ref = rec.float().clamp(0, 1), ref.float()
    return (float(peak_signal_noise_ratio(rec, ref, data_range=1.0)),
            float(structural_similarity_index_measure(rec, ref, data_range=1.0)))


@torch.no_grad()
def _judge(bundle: Any, rec: torch.Tensor) -> torch.Tensor:
    bundle.judge.eval()
    return torch.cat([bundle.judge(rec[i:i + 512].to(bundle.device)).argmax(1).cpu() for i in range(0, len(rec), 512)])


def run_attack(att: Attack, z: torch.Tensor, level: torch.Tensor, header: Any, batch: int = 256):
    labels, recs = [], []
    for i in range(0, len(z), batch):
        sl = slice(i, i + batch)
        hdr = type(header)(header.t_star, header.a, header.sigma_self2[sl])
        lab, rec = att.attack(z[sl], level[sl], hdr)
        labels.append(lab)
        recs.append(rec)
    lab = None if labels[0] is None else torch.cat(labels)
    rec = None if recs[0] is None else torch.cat(recs)
    return lab, rec


@torch.no_grad()
def evaluate_attacks(bundle: Any, attacks: dict[str, Attack], images: torch.Tensor, labels: torch.Tensor,
                     t_stars: list[int | None], offsets: list[float], snr_db: float = 20.0,
                     self_noise: tuple[str, ...] = ("random", "keyed"), seed: int = 0,
                     decode: str = "direct") -> dict[str, Any]:
    from diffsem.receiver import DiffusionReceiver

    gen = torch.Generator().manual_seed(seed)
    s = torch.cat([bundle.encoder(images[i:i + 1024].to(bundle.device)).cpu() for i in range(0, len(images), 1024)])
    sigma_c2 = float(noise_variance(snr_db))
    receiver = DiffusionReceiver(bundle)
    rows: list[dict[str, Any]] = []
    gallery: dict[str, torch.Tensor] = {}
    for mode in self_noise:
        for t_star in t_stars:
            if mode == "keyed":
                x, header, info = keyed_self_noise_frame(s, t_star, bundle.abar, sigma_c2, EVAL_KEY, NonceSource())
            else:
                x, header = self_noise_frame(s, t_star, bundle.abar, sigma_c2, gen)
            y = x + sigma_c2 ** 0.5 * torch.randn(x.shape, generator=gen)
            if mode == "keyed":
                z_l, lv_l = keyed_listener_view(y, header, sigma_c2, info, EVAL_KEY)
            else:
                z_l, lv_l = listener_view(y, header, sigma_c2)
            legit = receiver.decode(z_l.to(bundle.device), lv_l.to(bundle.device), decode).labels.cpu()
            legit_acc = float((legit == labels).float().mean())
            for off in offsets:
                s2e = float(noise_variance(snr_db + off))
                ye = x + s2e ** 0.5 * torch.randn(x.shape, generator=gen)
                z_e, lv_e = listener_view(ye, header, s2e)
                row_base = {"self_noise": mode, "t_star": t_star, "snr_db": snr_db, "eve_offset_db": off,
                            "legit_acc": legit_acc, "legit_abar_eff": float(lv_l.mean()), "eve_abar_eff": float(lv_e.mean())}
                best = 0.0
                per = []
                for name, att in attacks.items():
                    t0 = time.time()
                    lab, rec = run_attack(att, z_e, lv_e, header)
                    r = {**row_base, "attack": name, "seconds": round(time.time() - t0, 2)}
                    if lab is not None:
                        r["label_acc"] = float((lab == labels).float().mean())
                    if rec is not None:
                        r["judged_acc"] = float((_judge(bundle, rec) == labels).float().mean())
                        r["psnr"], r["ssim"] = _psnr_ssim(rec, images)
                        if off == offsets[0]:
                            gallery[f"{name} | {mode} t*={t_star}"] = rec[:8]
                    r["attacker_acc"] = max(r.get("label_acc", 0.0), r.get("judged_acc", 0.0))
                    best = max(best, r["attacker_acc"])
                    per.append(r)
                for r in per:
                    r["secrecy_gap"] = legit_acc - best
                rows.extend(per)
    return {"rows": rows, "gallery": gallery, "originals": images[:8]}


def write_attack_report(res: dict[str, Any], out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "attacks.json", "md": out / "attacks.md", "gallery": out / "attack_gallery.png",
             "scatter": out / "attack_acc_vs_psnr.png"}
    paths["json"].write_text(json.dumps(res["rows"], indent=2) + "\n")
    paths["md"].write_text(markdown_table(res["rows"]) + "\n")
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
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in sorted({r["attack"] for r in res["rows"] if "psnr" in r}):
        pts = [(r["psnr"], r["judged_acc"]) for r in res["rows"] if r["attack"] == name and "psnr" in r]
        ax.scatter(*zip(*pts, strict=True), label=name, s=14)
    ax.set_xlabel("PSNR (dB)")
    ax.set_ylabel("judged accuracy")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths["scatter"], dpi=110)
    plt.close(fig)
    return paths


def markdown_table(rows: list[dict[str, Any]]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    head = "| self-noise | t* | eve offset dB | attack | legit acc | label acc | judged acc | PSNR | SSIM | gap |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append("| " + " | ".join(f(r.get(k)) for k in ("self_noise", "t_star", "eve_offset_db", "attack", "legit_acc",
                                                             "label_acc", "judged_acc", "psnr", "ssim", "secrecy_gap")) + " |")
    return "\n".join(lines)


def load_attacks(bundle: Any, names: list[str], root: Path, **options: Any) -> dict[str, Attack]:
    out = {}
    for name in names:
        opts = {k: v for k, v in options.items() if name == "whitebox-inversion" or k != "transmitter_checkpoint"}
        att = make_attack(name, bundle, **opts)
        if att.trainable:
            load_attack(att, attack_checkpoint_path(root, name))
        out[name] = att
    return out
