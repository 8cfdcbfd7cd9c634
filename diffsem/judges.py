"""The panel of judges that turns reconstructions into the attacker's task accuracy (docs/design.md §4).

Leakage is the attacker's task accuracy. An attack that returns only images is scored by judges: image classifiers
that never see latents. One judge is not a measurement (white-box reconstructions are adversarial-looking images
whose features transfer unevenly between networks), so every report shows a panel of judges with different
inductive biases, their **max** (the conservative leakage figure, which the secrecy gap uses by default) and their
**spread** (max - min over the judges that must name a class, :func:`diffsem.leakage.summarise`):

- ``cnn``: the bundle's own judge (:class:`~diffsem.models.ImageJudge`, ``judge.safetensors``, trained by
  ``diffsem train`` on clean images without augmentation);
- ``resnet``: a deeper residual CNN, shifts and small rotations;
- ``mlp``: an MLP on pixels (no convolution), elastic distortion and pixel noise;
- ``robust``: a small strided CNN trained adversarially (PGD, :mod:`diffsem.robust`; L∞ ε = 0.3 on MNIST, 0.1 on
  Fashion-MNIST), for diversity, not as a model of a person;
- ``abstain``: a judge that can say "can't tell" (its label :data:`ABSTAIN`), a reject class trained on
  out-of-distribution negatives (:mod:`diffsem.abstain`). What it labels correctly is the *confidently
  recognisable* leakage; it joins the max like any reader the attacker could use, and is reported beside it;
- ``adapted``: per attack, a residual CNN trained on the attacker's *own reconstructions* of its auxiliary images
  (``diffsem attack train``), the classifier an attacker would really put behind its decoder.

Every clean judge trains on the transmitter's split of the training set only, never on the attacker's auxiliary
split; the adapted judge trains on the auxiliary split only. Weights: ``<checkpoints>/judges/<name>.safetensors``
and ``<checkpoints>/attacks/<attack>.judge.safetensors``, float16 with JSON cards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffsem.augment import AUGMENTS
from diffsem.checkpoints import load_weights, read_card, save_weights
from diffsem.config import ModelConfig
from diffsem.data import get_spec, load_split, transmitter_split
from diffsem.errors import CheckpointError, ConfigError
from diffsem.fit import fit
from diffsem.leakage import ABSTAINING  # the judge that can say "can't tell"
from diffsem.models import (  # noqa: F401 - ABSTAIN, decide: re-exported, the judges' vocabulary
    ABSTAIN,
    AbstainingJudge,
    ImageJudge,
    PixelMLPJudge,
    ResidualJudge,
    StridedJudge,
    decide,
)

BUNDLE_JUDGE = "cnn"  # the bundle's ``judge`` part
ADAPTED = "adapted"
ARCHITECTURES: dict[str, Callable[[ModelConfig], nn.Module]] = {
    "cnn": ImageJudge, "resnet": ResidualJudge, "mlp": PixelMLPJudge, "strided": StridedJudge,
    "abstaining": AbstainingJudge}


@dataclass(frozen=True)
class Recipe:
    """How one committed judge is trained: architecture, augmentation, seed, epochs, learning rate, and how it
    learns: ``clean`` (cross-entropy on augmented images), ``adversarial`` (:mod:`diffsem.robust`) or
    ``abstaining`` (with a reject class, :mod:`diffsem.abstain`)."""

    arch: str
    augment: str
    seed: int
    epochs: int
    lr: float = 2e-3
    kind: str = "clean"


# The judges trained by ``diffsem attack train-judge`` (``cnn`` is trained by ``diffsem train``), and the recipe of
# every attacker-adapted judge.
RECIPES = {
    "resnet": Recipe("resnet", "shift-rotate", seed=11, epochs=2),
    "mlp": Recipe("mlp", "elastic-noise", seed=12, epochs=25, lr=1e-3),
    "robust": Recipe("strided", "none", seed=14, epochs=10, lr=5e-3, kind="adversarial"),
    ABSTAINING: Recipe("abstaining", "none", seed=15, epochs=4, kind="abstaining"),
}
ADAPTED_RECIPE = Recipe("resnet", "shift-rotate", seed=13, epochs=4)


def fit_judge(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe, name: str,
              epochs: int | None = None, batch: int = 256) -> float:
    """Train ``judge`` on images (N, 1, 28, 28) in [0, 1] and labels (N,) with ``recipe``'s augmentation and seed;
    return the last epoch's training accuracy (on augmented images)."""
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)  # dropout
    augment = AUGMENTS[recipe.augment]

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = judge(augment(images[idx], gen))
        return F.cross_entropy(logits, labels[idx]), (logits.argmax(1) == labels[idx]).sum()

    res = fit(judge, step, len(images), gen, epochs or recipe.epochs, batch, recipe.lr, name)
    return float(res.accuracy or 0.0)




@torch.no_grad()
def judge_accuracy(judge: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Share of images the judge labels correctly (an abstention is never correct)."""
    judge.eval()
    hits = sum(int((decide(judge, images[i:i + batch]) == labels[i:i + batch]).sum())
               for i in range(0, len(images), batch))
    return hits / max(len(images), 1)


PGD_CARD_STEPS = 40  # a robust judge's card: PGD-40 accuracy on the first PGD_CARD_IMAGES test images
PGD_CARD_IMAGES = 2000


def judge_path(root: Path, name: str) -> Path:
    """``<checkpoint folder>/judges/<name>.safetensors``."""
    return Path(root) / "judges" / f"{name}.safetensors"


def _weights_name(attack: str) -> str:
    """The attack whose adapted judge ``attack`` uses (its ``weights_of``; itself, or an unknown name, as is)."""
    from diffsem.attacks.base import attack_class  # the attacks know the judges, not the other way round
    from diffsem.errors import ConfigError

    try:
        return attack_class(attack).weights_name()
    except ConfigError:
        return attack


def adapted_judge_path(root: Path, attack: str) -> Path:
    """``<checkpoint folder>/attacks/<attack>.judge.safetensors``: the judge adapted to that attack's images."""
    return Path(root) / "attacks" / f"{attack}.judge.safetensors"


def train_clean_judge(cfg: ModelConfig, name: str, out_root: Path, data_dir: Path | None = None,
                      epochs: int | None = None, max_train: int | None = None) -> dict[str, Any]:
    """Train the clean judge ``name`` (:data:`RECIPES`) on the transmitter's split and write it with its card,
    clean test accuracy included; return the card's metrics."""
    if name not in RECIPES:
        raise ConfigError(f"unknown judge {name!r}; trainable judges: {', '.join(RECIPES)} "
                          f"({BUNDLE_JUDGE!r} is the bundle's part, trained by `diffsem train`)")
    recipe = RECIPES[name]
    images, labels = load_split(cfg.dataset, "train", data_dir)
    tx, _ = transmitter_split(len(images), seed=0)  # never the attacker's auxiliary split
    tx = tx[:max_train] if max_train else tx
    judge = ARCHITECTURES[recipe.arch](cfg)
    test_images, test_labels = load_split(cfg.dataset, "test", data_dir)
    extra: dict[str, Any] = {}
    t0 = time.time()
    if recipe.kind == "adversarial":
        from diffsem.robust import pgd_accuracy, robust_eps, train_robust

        eps = robust_eps(cfg.dataset)
        extra = {"eps": eps, **train_robust(judge, images[tx], labels[tx], eps, recipe.seed, epochs or recipe.epochs,
                                            recipe.lr, f"judge {name}")}
        seconds = time.time() - t0
        metrics = {"train_acc": extra.pop("train_adv_acc"),
                   f"pgd{PGD_CARD_STEPS}_test_acc": pgd_accuracy(judge, test_images[:PGD_CARD_IMAGES],
                                                                 test_labels[:PGD_CARD_IMAGES], eps, PGD_CARD_STEPS),
                   "pgd_test_images": PGD_CARD_IMAGES}
    elif recipe.kind == "abstaining":
        from diffsem.abstain import abstention_metrics, train_abstaining

        extra = train_abstaining(judge, images[tx], labels[tx], cfg.dataset, recipe, f"judge {name}", epochs, data_dir)
        seconds = time.time() - t0
        metrics = {"train_acc": extra.pop("train_acc"),
                   **abstention_metrics(judge, test_images, test_labels, cfg.dataset, data_dir)}
    else:
        metrics = {"train_acc": fit_judge(judge, images[tx], labels[tx], recipe, f"judge {name}", epochs)}
        seconds = time.time() - t0
    metrics["clean_test_acc"] = judge_accuracy(judge, test_images, test_labels)
    save_weights(judge, judge_path(out_root, name), {
        "judge": name, "arch": recipe.arch, "augment": recipe.augment, "seed": recipe.seed, "kind": recipe.kind,
        "epochs": epochs or recipe.epochs, "lr": recipe.lr, "config": cfg.model_dump(mode="json"),
        "dataset": {"name": cfg.dataset, "sha256": get_spec(cfg.dataset).sha256}, "split": "transmitter",
        "n_train": len(tx), **extra,
        "train_seconds": round(seconds, 1), "metrics": metrics})
    return metrics


def load_judge(path: Path, cfg: ModelConfig) -> tuple[nn.Module, dict[str, Any]]:
    """A judge and its card; a checkpoint for another data set or k is refused with both sides named."""
    if not path.exists():
        raise CheckpointError(f"{path}: judge checkpoint not found; train it with `diffsem attack train-judge` "
                              "(clean judges) or `diffsem attack train` (an attack's adapted judge)")
    card = read_card(path)
    stored = card.get("config", {})
    want = cfg.model_dump(mode="json")
    for key in ("dataset", "k"):
        if stored.get(key) != want[key]:
            raise CheckpointError(f"{path}: judge checkpoint has {key}={stored.get(key)!r} but the system it judges "
                                  f"has {key}={want[key]!r}")
    arch = card.get("arch")
    if arch not in ARCHITECTURES:
        raise CheckpointError(f"{path}: judge card names architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    judge = ARCHITECTURES[arch](cfg)
    load_weights(judge, path)
    return judge.eval(), card


class JudgePanel:
    """Named judges (at least one) that label reconstructions (N, 1, 28, 28) in [0, 1]; an attack's ``adapted``
    judge joins the panel for that attack only (:meth:`for_attack`)."""

    def __init__(self, judges: dict[str, nn.Module], adapted: dict[str, nn.Module] | None = None,
                 device: torch.device | None = None):
        if not judges:
            raise ConfigError("a panel of judges needs at least one judge; give one or more of "
                              f"{', '.join(ARCHITECTURES)} (the bundle's judge is {BUNDLE_JUDGE!r})")
        device = device or torch.device("cpu")
        self.judges = {k: m.to(device).eval() for k, m in judges.items()}
        self.adapted = {k: m.to(device).eval() for k, m in (adapted or {}).items()}
        self.device = device

    @classmethod
    def of_bundle(cls, bundle: Any) -> JudgePanel:
        """The bundle's own judge alone (``cnn``): the panel when none is given."""
        return cls({BUNDLE_JUDGE: bundle.judge}, device=bundle.device)

    def names(self, attack: str | None = None) -> list[str]:
        """The judges that score ``attack``'s reconstructions, in report order."""
        return [*self.judges, *([ADAPTED] if attack in self.adapted else [])]

    def for_attack(self, attack: str | None) -> dict[str, nn.Module]:
        return {**self.judges, **({ADAPTED: self.adapted[attack]} if attack in self.adapted else {})}

    @torch.no_grad()
    def labels(self, reconstructions: torch.Tensor, attack: str | None = None,
               batch: int = 512) -> dict[str, torch.Tensor]:
        """Each judge's labels (N,) int64 (CPU) for reconstructions (N, 1, 28, 28) in [0, 1]; an abstaining
        judge's "can't tell" is :data:`ABSTAIN`."""
        x = reconstructions.float()
        return {name: torch.cat([decide(j, x[i:i + batch].to(self.device)).cpu() for i in range(0, len(x), batch)])
                for name, j in self.for_attack(attack).items()}


def judge_list(text: str | None) -> list[str] | None:
    """A ``--judges`` option's comma-separated names as a list; None (not given): the default panel."""
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def load_panel(bundle: Any, root: Path, names: list[str] | None = None, attacks: list[str] = (),
               adapted: bool = True) -> JudgePanel:
    """The panel for ``bundle`` from the checkpoint folder ``root``: ``names`` (default: ``cnn`` plus every clean
    judge found under ``root/judges``), and, when ``adapted``, the adapted judge of each of ``attacks`` that has one
    under ``root/attacks``. An explicitly named judge that is missing is an error; a panel of none is one too."""
    found = sorted(p.name.removesuffix(".safetensors") for p in (Path(root) / "judges").glob("*.safetensors"))
    names = [BUNDLE_JUDGE, *found] if names is None else names
    judges: dict[str, nn.Module] = {}
    for name in names:
        if name == ADAPTED:
            raise ConfigError(f"judge {ADAPTED!r} is per attack: it joins each attack's panel by itself")
        judges[name] = bundle.judge if name == BUNDLE_JUDGE else load_judge(judge_path(root, name), bundle.cfg)[0]
    paths = {a: adapted_judge_path(root, _weights_name(a)) for a in attacks}
    extra = {a: load_judge(path, bundle.cfg)[0] for a, path in paths.items() if adapted and path.exists()}
    return JudgePanel(judges, extra, getattr(bundle, "device", torch.device("cpu")))
