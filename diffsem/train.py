"""Training of every part of a DiffSem system, in four stages (``diffsem train``).

1. encoder + noise-aware classifier, jointly, on z_t = sqrt(abar) s + sqrt(1 - abar) eps with abar drawn
   from the schedule (and a share of clean latents), on the transmitter's split of the training set;
   then the ``channel`` classifier on the frozen latents over the channel's SNR range only (the paper's
   plain task-oriented baseline, which never saw self-noise);
2. the class-conditional U-Net on the frozen encoder's latents, epsilon prediction, label dropout to the
   null label so one network is both conditional and unconditional, with part of its timesteps drawn from
   the band where the receiver works (``unet_focus_timesteps``);
3. the judge, an independent image classifier, on clean images;
4. the core's simple eavesdropper: a noise-aware classifier on intercepted latents of the *attacker's*
   auxiliary split, obtained through black-box queries to the encoder.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, model_validator
from tqdm import tqdm

from diffsem.bundle import ModelBundle, encode_all
from diffsem.checkpoints import code_version, save_weights
from diffsem.config import CHANNEL_TRAINING_SNR_DB, DatasetName, ModelConfig
from diffsem.data import default_data_dir, get_spec, load_split, transmitter_split
from diffsem.diffusion import alphas_cumprod, diffuse, timestep_table
from diffsem.errors import ConfigError


class TrainConfig(BaseModel):
    """Epoch counts are sized so the default run takes under 20 minutes on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetName = "mnist"
    k: int = 256
    seed: int = 0
    batch_size: int = 256
    epochs_encoder: int = 6
    epochs_channel_classifier: int = 2
    epochs_unet: int = 3
    epochs_judge: int = 2
    epochs_eavesdropper: int = 4
    lr: float = 2e-3
    lr_unet: float = 1e-3
    clean_fraction: float = 0.3
    label_dropout: float = 0.2
    # The receiver denoises from t_eff, which for privacy levels that cost accuracy lies around t = 400-700;
    # weighting U-Net training towards that band lifted the channel classifier's denoise gain (README).
    unet_focus_timesteps: tuple[int, int] = (300, 800)
    unet_focus_weight: float = 0.5
    max_train: int | None = None  # cap on training images, for quick tests

    @model_validator(mode="after")
    def _focus_in_range(self) -> TrainConfig:
        lo, hi = self.unet_focus_timesteps
        if not 0 <= lo < hi:
            raise ValueError(f"unet_focus_timesteps={self.unet_focus_timesteps} must satisfy 0 <= lo < hi")
        if not 0.0 <= self.unet_focus_weight < 1.0:
            raise ValueError(f"unet_focus_weight={self.unet_focus_weight} must be in [0, 1)")
        return self


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i:i + batch_size]


def noisy_levels(b: int, abar: torch.Tensor, clean_fraction: float, gen: torch.Generator) -> torch.Tensor:
    """abar per sample (B,): 1.0 with probability ``clean_fraction``, else abar_t with t ~ U[0, T)."""
    t = torch.randint(0, len(abar), (b,), generator=gen)
    levels = abar[t].to(torch.float32)
    return torch.where(torch.rand(b, generator=gen) < clean_fraction, torch.ones_like(levels), levels)


def channel_levels(b: int, clean_fraction: float, gen: torch.Generator) -> torch.Tensor:
    """abar per sample (B,) of a plain link (no self-noise) with SNR ~ U[0, 20] dB: abar = 1 / (1 + N0)."""
    lo, hi = CHANNEL_TRAINING_SNR_DB
    snr = lo + (hi - lo) * torch.rand(b, generator=gen)
    levels = 1.0 / (1.0 + torch.pow(10.0, -snr / 10.0))
    return torch.where(torch.rand(b, generator=gen) < clean_fraction, torch.ones_like(levels), levels)


def _run_epochs(name: str, epochs: int, n: int, tc: TrainConfig, gen: torch.Generator,
                step: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], opt: torch.optim.Optimizer) -> float:
    """Generic loop with a cosine learning-rate decay; ``step(idx)`` returns (loss, n_correct or 0).

    Returns the last epoch's accuracy, or its mean loss where the stage has no accuracy.
    """
    last = 0.0
    steps_per_epoch = -(-n // tc.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs * steps_per_epoch, 1))
    for epoch in range(epochs):
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(list(_batches(n, tc.batch_size, gen)), desc=f"{name} {epoch + 1}/{epochs}", leave=False)
        for idx in bar:
            loss, hits = step(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(idx)
            correct += int(hits)
            loss_sum += float(loss.detach()) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / total:.4f}", acc=f"{correct / total:.3f}")
        last = correct / total if correct else loss_sum / total
        tqdm.write(f"{name} epoch {epoch + 1}: loss {loss_sum / total:.4f} acc {correct / total:.4f}")
    return last


def train_all(tc: TrainConfig, out: Path, data_dir: Path | None = None) -> ModelBundle:
    """Train every part and write ``out/<part>.safetensors`` with cards, plus ``out/bundle.json``."""
    version = code_version()  # of the code that starts training, not whatever HEAD is when it ends
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    cfg = ModelConfig(dataset=tc.dataset, k=tc.k)
    if tc.unet_focus_timesteps[1] > cfg.num_train_timesteps:
        raise ConfigError(f"unet_focus_timesteps={tc.unet_focus_timesteps} must end at most at "
                          f"num_train_timesteps={cfg.num_train_timesteps}")
    images, labels = load_split(tc.dataset, "train", data_dir)
    tx_idx, aux_idx = transmitter_split(len(images), seed=tc.seed)
    if tc.max_train:
        tx_idx, aux_idx = tx_idx[:tc.max_train], aux_idx[:max(tc.max_train // 5, 1)]
    x_tx, y_tx, x_aux, y_aux = images[tx_idx], labels[tx_idx], images[aux_idx], labels[aux_idx]
    abar = alphas_cumprod(cfg)
    bundle = ModelBundle.fresh(cfg)
    times: dict[str, float] = {}
    metrics: dict[str, float] = {}

    t0 = time.time()
    enc, clf = bundle.encoder.train(), bundle.classifier.train()
    opt = torch.optim.AdamW([*enc.parameters(), *clf.parameters()], lr=tc.lr)

    def enc_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = noisy_levels(len(idx), abar, tc.clean_fraction, gen)
        logits = clf(diffuse(enc(x_tx[idx]), levels, gen), levels)
        return F.cross_entropy(logits, y_tx[idx]), (logits.argmax(1) == y_tx[idx]).sum()

    metrics["encoder_train_acc"] = _run_epochs("encoder+classifier", tc.epochs_encoder, len(tx_idx), tc, gen, enc_step, opt)
    times["encoder"] = time.time() - t0

    t0 = time.time()
    s_tx = encode_all(bundle, x_tx)
    chan = bundle.channel_classifier.train()
    opt = torch.optim.AdamW(chan.parameters(), lr=tc.lr)

    def channel_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = channel_levels(len(idx), tc.clean_fraction, gen)
        logits = chan(diffuse(s_tx[idx], levels, gen), levels)
        return F.cross_entropy(logits, y_tx[idx]), (logits.argmax(1) == y_tx[idx]).sum()

    metrics["channel_classifier_train_acc"] = _run_epochs("channel classifier", tc.epochs_channel_classifier,
                                                          len(tx_idx), tc, gen, channel_step, opt)
    times["channel_classifier"] = time.time() - t0

    t0 = time.time()
    unet = bundle.unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=tc.lr_unet)
    shape = cfg.latent_shape
    t_of_draw = timestep_table(cfg.num_train_timesteps, tc.unet_focus_timesteps, tc.unet_focus_weight)

    def unet_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = len(idx)
        t = t_of_draw[torch.randint(0, cfg.num_train_timesteps, (b,), generator=gen)]
        eps = torch.randn(b, *shape, generator=gen)
        a = abar[t].to(torch.float32).reshape(b, 1, 1, 1)
        z = a.sqrt() * s_tx[idx].reshape(b, *shape) + (1 - a).sqrt() * eps
        cond = torch.where(torch.rand(b, generator=gen) < tc.label_dropout, cfg.null_label, y_tx[idx])
        return F.mse_loss(unet(z, t, class_labels=cond).sample, eps), torch.tensor(0)

    metrics["unet_train_mse"] = _run_epochs("unet", tc.epochs_unet, len(tx_idx), tc, gen, unet_step, opt)
    times["unet"] = time.time() - t0

    t0 = time.time()
    judge = bundle.judge.train()
    opt = torch.optim.AdamW(judge.parameters(), lr=tc.lr)

    def judge_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = judge(x_tx[idx])
        return F.cross_entropy(logits, y_tx[idx]), (logits.argmax(1) == y_tx[idx]).sum()

    metrics["judge_train_acc"] = _run_epochs("judge", tc.epochs_judge, len(tx_idx), tc, gen, judge_step, opt)
    times["judge"] = time.time() - t0

    t0 = time.time()
    s_aux = encode_all(bundle, x_aux)  # black-box queries: the attacker sees encoder outputs, not weights
    eve = bundle.eavesdropper.train()
    opt = torch.optim.AdamW(eve.parameters(), lr=tc.lr)

    def eve_step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels = noisy_levels(len(idx), abar, tc.clean_fraction, gen)
        logits = eve(diffuse(s_aux[idx], levels, gen), levels)
        return F.cross_entropy(logits, y_aux[idx]), (logits.argmax(1) == y_aux[idx]).sum()

    metrics["eavesdropper_train_acc"] = _run_epochs("eavesdropper", tc.epochs_eavesdropper, len(aux_idx), tc, gen,
                                                    eve_step, opt)
    times["eavesdropper"] = time.time() - t0

    bundle.to(torch.device("cpu"))
    write_bundle(bundle, tc, out, times, metrics, data_dir, version)
    return bundle


def write_bundle(bundle: ModelBundle, tc: TrainConfig, out: Path, times: dict[str, float],
                 metrics: dict[str, float], data_dir: Path | None, version: str) -> None:
    """Save all parts with cards; the model id combines data set, k and the encoder's content hash."""
    digest = hashlib.sha256(b"".join(v.to(torch.float16).numpy().tobytes()
                                     for v in bundle.encoder.state_dict().values())).hexdigest()[:10]
    model_id = f"{tc.dataset}-k{tc.k}-{digest}"
    bundle.model_id = model_id
    spec = get_spec(tc.dataset)
    common = {"model_id": model_id, "config": bundle.cfg.model_dump(mode="json"), "train_config": tc.model_dump(),
              "dataset": {"name": tc.dataset, "sha256": spec.sha256,
                          "data_dir": str(data_dir or default_data_dir())}, "seed": tc.seed,
              "code_version": version}
    part_time = {**times, "classifier": times["encoder"]}
    for part, module in bundle.modules().items():
        save_weights(module, out / f"{part}.safetensors",
                     {**common, "part": part, "train_seconds": round(part_time[part], 1), "metrics": metrics})
    manifest = {**common, "parts": list(bundle.modules()), "train_seconds": {k: round(v, 1) for k, v in times.items()},
                "metrics": metrics}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
