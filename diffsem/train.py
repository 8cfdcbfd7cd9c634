"""Training of every part of a DiffSem system (``diffsem train``), stage by stage as :data:`STAGES` lists them.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from diffsem.bundle import ModelBundle, encode_all
from diffsem.checkpoints import code_version, save_weights
from diffsem.config import DatasetName, ModelConfig
from diffsem.data import get_spec, load_split, transmitter_split
from diffsem.diffusion import alphas_cumprod, diffuse, diffuse_with_noise, timestep_table
from diffsem.errors import ConfigError
from diffsem.fit import fit
from diffsem.samplers import channel_levels, schedule_levels


class TrainConfig(BaseModel):
    """Epoch counts are sized so the default run takes under 20 minutes on 2 CPU cores. Fields with a description
    are ``diffsem train`` options (diffsem/cli.py builds them from here)."""

    model_config = ConfigDict(extra="forbid")
    dataset: DatasetName = "mnist"
    k: int = Field(256, description="real latent values per frame (k/2 complex channel symbols)")
    seed: int = Field(0, description="seed of every training generator")
    batch_size: int = 256
    epochs_encoder: int = Field(6, description="epochs of the encoder with the matched noise-aware classifier")
    epochs_channel_classifier: int = Field(2, description="epochs of the 'channel' classifier (paper baseline)")
    epochs_unet: int = Field(3, description="epochs of the class-conditional U-Net")
    epochs_judge: int = Field(2, description="epochs of the judge (clean-image classifier)")
    epochs_eavesdropper: int = Field(4, description="epochs of the core's simple eavesdropper")
    lr: float = 2e-3
    lr_unet: float = 1e-3
    clean_fraction: float = 0.3
    label_dropout: float = 0.2
    # The receiver denoises from t_eff, which for privacy levels that cost accuracy lies around t = 400-700;
    # weighting U-Net training towards that band lifted the channel classifier's denoise gain (docs/results).
    unet_focus_timesteps: tuple[int, int] = (300, 800)
    unet_focus_weight: float = Field(0.5, description="share of U-Net training timesteps drawn from t = 300-799 "
                                     "(0 = uniform)")
    max_train: int | None = Field(None, description="cap on training images (quick runs)")

    @model_validator(mode="after")
    def _focus_in_range(self) -> TrainConfig:
        lo, hi = self.unet_focus_timesteps
        if not 0 <= lo < hi:
            raise ValueError(f"unet_focus_timesteps={self.unet_focus_timesteps} must satisfy 0 <= lo < hi")
        if not 0.0 <= self.unet_focus_weight < 1.0:
            raise ValueError(f"unet_focus_weight={self.unet_focus_weight} must be in [0, 1)")
        return self


@dataclass
class StageData:
    """What a stage's loss sees: the bundle being trained, the config, the shared generator, abar (T,), the split's
    images (N, 1, 28, 28) and labels (N,), and its latents (N, k) from the frozen encoder, encoded on first use."""

    bundle: ModelBundle
    tc: TrainConfig
    gen: torch.Generator
    abar: torch.Tensor
    images: torch.Tensor
    labels: torch.Tensor
    _latents: torch.Tensor | None = None

    @property
    def latents(self) -> torch.Tensor:
        if self._latents is None:  # only after the encoder stage, which never asks for them
            self._latents = encode_all(self.bundle, self.images)
        return self._latents


def _classified(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).sum()


def _encoder_loss(d: StageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder and matched classifier jointly, at every noise level of the schedule (and clean)."""
    levels = schedule_levels(len(idx), d.abar, d.tc.clean_fraction, d.gen)
    return _classified(d.bundle.classifier(diffuse(d.bundle.encoder(d.images[idx]), levels, d.gen), levels), d.labels[idx])


def _channel_loss(d: StageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The channel classifier on frozen latents over the channel's SNR range only (never self-noise)."""
    levels = channel_levels(len(idx), d.tc.clean_fraction, d.gen)
    return _classified(d.bundle.channel_classifier(diffuse(d.latents[idx], levels, d.gen), levels), d.labels[idx])


def _unet_loss(d: StageData, idx: torch.Tensor) -> torch.Tensor:
    """Epsilon prediction at focus-weighted timesteps, with label dropout to the null label."""
    cfg, b = d.bundle.cfg, len(idx)
    t_of_draw = timestep_table(cfg.num_train_timesteps, d.tc.unet_focus_timesteps, d.tc.unet_focus_weight)
    t = t_of_draw[torch.randint(0, cfg.num_train_timesteps, (b,), generator=d.gen)]
    z, eps = diffuse_with_noise(d.latents[idx], d.abar[t].to(torch.float32), d.gen)
    cond = torch.where(torch.rand(b, generator=d.gen) < d.tc.label_dropout, cfg.null_label, d.labels[idx])
    shape = (b, *cfg.latent_shape)
    return F.mse_loss(d.bundle.unet(z.reshape(shape), t, class_labels=cond).sample, eps.reshape(shape))


def _judge_loss(d: StageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The independent judge on clean images."""
    return _classified(d.bundle.judge(d.images[idx]), d.labels[idx])


def _eavesdropper_loss(d: StageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The core's eavesdropper on its own queried latents, at every noise level (and clean)."""
    levels = schedule_levels(len(idx), d.abar, d.tc.clean_fraction, d.gen)
    return _classified(d.bundle.eavesdropper(diffuse(d.latents[idx], levels, d.gen), levels), d.labels[idx])


@dataclass(frozen=True)
class Stage:
    """One training stage: the bundle parts that learn together, the TrainConfig fields with their epoch count and
    learning rate, the loss, the split (``tx``: the transmitter's; ``aux``: the attacker's) and the card's metric."""

    name: str
    parts: tuple[str, ...]
    epochs: str
    lr: str
    loss: Callable[[StageData, torch.Tensor], torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
    split: str
    metric: str


# In this order: each stage's random draws follow the previous stage's (the checkpoints depend on it).
STAGES = (
    Stage("encoder", ("encoder", "classifier"), "epochs_encoder", "lr", _encoder_loss, "tx", "encoder_train_acc"),
    Stage("channel_classifier", ("channel_classifier",), "epochs_channel_classifier", "lr", _channel_loss, "tx",
          "channel_classifier_train_acc"),
    Stage("unet", ("unet",), "epochs_unet", "lr_unet", _unet_loss, "tx", "unet_train_mse"),
    Stage("judge", ("judge",), "epochs_judge", "lr", _judge_loss, "tx", "judge_train_acc"),
    Stage("eavesdropper", ("eavesdropper",), "epochs_eavesdropper", "lr", _eavesdropper_loss, "aux",
          "eavesdropper_train_acc"),
)


def train_all(tc: TrainConfig, out: Path, data_dir: Path | None = None) -> ModelBundle:
    """Train every part, stage by stage (:data:`STAGES`), and write ``out/<part>.safetensors`` with cards plus
    ``out/bundle.json``."""
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
    abar = alphas_cumprod(cfg)
    bundle = ModelBundle.fresh(cfg)
    splits = {name: StageData(bundle, tc, gen, abar, images[idx], labels[idx]) for name, idx in
              (("tx", tx_idx), ("aux", aux_idx))}
    times: dict[str, float] = {}
    metrics: dict[str, float] = {}
    for stage in STAGES:
        t0 = time.time()
        data = splits[stage.split]
        learner = nn.ModuleList([getattr(bundle, p) for p in stage.parts])
        res = fit(learner, lambda idx, st=stage, d=data: st.loss(d, idx), len(data.labels), gen,
                  getattr(tc, stage.epochs), tc.batch_size, getattr(tc, stage.lr), stage.name)
        metrics[stage.metric] = res.loss if res.accuracy is None else res.accuracy
        times[stage.name] = time.time() - t0
    bundle.to(torch.device("cpu"))
    write_bundle(bundle, tc, out, times, metrics, version)
    return bundle


def write_bundle(bundle: ModelBundle, tc: TrainConfig, out: Path, times: dict[str, float],
                 metrics: dict[str, float], version: str) -> None:
    """Save all parts with cards; the model id combines data set, k and the encoder's content hash. The cards name
    the data by its checksums, not by where it lay on the training host."""
    digest = hashlib.sha256(b"".join(v.to(torch.float16).numpy().tobytes()
                                     for v in bundle.encoder.state_dict().values())).hexdigest()[:10]
    model_id = f"{tc.dataset}-k{tc.k}-{digest}"
    bundle.model_id = model_id
    spec = get_spec(tc.dataset)
    common = {"model_id": model_id, "config": bundle.cfg.model_dump(mode="json"), "train_config": tc.model_dump(),
              "dataset": {"name": tc.dataset, "sha256": spec.sha256}, "seed": tc.seed,
              "code_version": version}
    part_time = {part: times[stage.name] for stage in STAGES for part in stage.parts}
    for part, module in bundle.modules().items():
        save_weights(module, out / f"{part}.safetensors",
                     {**common, "part": part, "train_seconds": round(part_time[part], 1), "metrics": metrics})
    manifest = {**common, "parts": list(bundle.modules()), "train_seconds": {k: round(v, 1) for k, v in times.items()},
                "metrics": metrics}
    (out / "bundle.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
