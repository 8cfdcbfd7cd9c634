"""The attack plugin API: one base class, one discovery, one loader.

An attack is a class built from the model bundle (for its public parts: config, schedule, judge) and options::

    class MyAttack(Attack):
        name = "my-attack"
        trainable = True           # has weights: fit() learns them, load_attack() reads them
        def fit(self, images, labels, **kw) -> dict: ...          # the attacker's own auxiliary data
        def module(self) -> nn.Module: ...                         # what save_attack / load_attack store
        def attack(self, z, abar_eff, header) -> (labels | None, reconstructions | None)

``z`` (B, k) are intercepted latents normalised by the listener (:func:`diffsem.pipeline.listener_view`), so they are
a diffusion latent z_t at ``abar_eff`` (B,); ``header`` is the frames' :class:`~diffsem.pipeline.PublicHeader`.
labels: (B,) int64; reconstructions: (B, 1, 28, 28) in [0, 1].

Every attack, built-in or not, is found by name in the entry-point group ``diffsem.attacks``
(``my-attack = my_pkg.attacks:MyAttack`` in the package's pyproject.toml); the built-ins are listed in this project's
pyproject.toml like any plugin. What an attack needs is declared on its class, never special-cased by name.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffsem.checkpoints import load_weights, read_card, save_weights
from diffsem.errors import CheckpointError, ConfigError, DiffSemError

ENTRY_POINT_GROUP = "diffsem.attacks"
AttackResult = tuple[torch.Tensor | None, torch.Tensor | None]
# What an attack reaches beyond its own channel tap and the public headers (docs/design.md §4, "Threat models").
THREAT_MODELS = {
    "query": "query access: black-box queries to the transmitter's encoder with its own images",
    "white-box": "white-box: the transmitter's encoder weights",
    "none": "no oracle: public data of the same kind and the intercepted frames only",
}


def query_encoder(bundle: Any, images: torch.Tensor) -> torch.Tensor:
    """Black-box queries: the transmitter encodes the attacker's images; the attacker sees only the outputs (CPU)."""
    from diffsem.bundle import encode_all

    return encode_all(bundle, images).cpu()


class AttackError(DiffSemError):
    """An attack that failed while running (reported by its name)."""


class Attack:
    """Base class. Subclasses set ``name``, implement :meth:`attack` and declare what they need:

    - ``trainable``: has weights, which :meth:`fit` learns and :func:`load_attack` reads from
      ``<checkpoints>/attacks/<name>.safetensors`` (:meth:`module` is the ``nn.Module`` that holds them);
    - ``needs_transmitter``: reads the transmitter's encoder weights, so it runs only when the caller passes
      ``transmitter_checkpoint`` (a white-box attacker, never in a black-box eavesdropper's default set);
    - ``in_default_zoo``: part of ``--attacks all`` (plugins are not, unless they say so);
    - ``weights_of``: the name of another attack whose trained weights (and adapted judge) it runs with, where it
      only changes what that attack is fed (the noise-replay attack runs the inversion decoder's);
    - ``threat_model``: what it reaches beyond its tap, a key of :data:`THREAT_MODELS` (``query`` unless it says
      otherwise; one that ``needs_transmitter`` is ``white-box``), shown in every table and on the dashboard;
    - ``needs_traffic``: :meth:`fit` takes ``traffic``, intercepted frames of the transmitter's own images
      (``diffsem attack train`` supplies them), as an attack without an oracle learns from;
    - ``cost``: its time per image, attack and judging, relative to the inversion decoder's. A sweep only uses it
      to start its costliest cells first (:func:`diffsem.sweep.run_grid`); the results do not depend on it.
    """

    name = "attack"
    trainable = False
    needs_transmitter = False
    in_default_zoo = False
    threat_model = "query"
    needs_traffic = False
    weights_of: str | None = None
    cost = 1.0

    @classmethod
    def weights_name(cls) -> str:
        """The attack whose weights and adapted judge this one loads: ``weights_of``, else itself."""
        return cls.weights_of or cls.name

    def __init__(self, bundle: Any, **options: Any):
        self.bundle = bundle
        self.options = options

    @property
    def device(self) -> torch.device:
        return getattr(self.bundle, "device", torch.device("cpu"))

    def fit(self, images: torch.Tensor, labels: torch.Tensor, **kw: Any) -> dict[str, float]:
        """Train on the attacker's auxiliary images (N, 1, 28, 28) and labels (N,); return metrics."""
        return {}

    def module(self) -> nn.Module | None:
        return None

    def aux_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Latents s (N, k) (CPU) of the attacker's own images (N, 1, 28, 28) as this attack obtains them: black-box
        queries to the transmitter's encoder. An attack without an oracle overrides this with its own encoder."""
        return query_encoder(self.bundle, images)

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        raise NotImplementedError

    def details(self) -> dict[str, str]:
        """What the attack has to say about its own run (the eavesdropper's ``Info`` shows it); {} by default."""
        return {}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_attacks() -> list[str]:
    """Names of every installed attack (built-ins and plugins)."""
    return sorted(_entry_points())


def attack_class(name: str) -> type[Attack]:
    """The class registered as ``name``; ``ConfigError`` listing the known names, or naming a broken plugin."""
    ep = _entry_points().get(name)
    if ep is None:
        raise ConfigError(f"unknown attack {name!r}; known attacks: {', '.join(known_attacks())}")
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin package must not take the caller down
        raise ConfigError(f"attack plugin {name!r} ({ep.value}) failed to load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Attack)) or cls.name != name:
        raise ConfigError(f"attack plugin {name!r} ({ep.value}) must be a diffsem.attacks.Attack subclass whose "
                          f"name is {name!r}")
    if cls.threat_model not in THREAT_MODELS or cls.needs_transmitter != (cls.threat_model == "white-box"):
        raise ConfigError(f"attack {name!r} declares threat_model {cls.threat_model!r} with needs_transmitter="
                          f"{cls.needs_transmitter}: use one of {', '.join(THREAT_MODELS)}, and white-box exactly when "
                          "it reads the transmitter's weights")
    return cls


def default_zoo(transmitter: bool) -> list[str]:
    """``--attacks all``: every loadable attack that is ``in_default_zoo``, with those that ``needs_transmitter``
    only when ``transmitter`` (the caller has the transmitter's checkpoint)."""
    names = []
    for name in known_attacks():
        try:
            cls = attack_class(name)
        except ConfigError:
            continue  # a broken plugin is reported when named, not when it is merely installed
        if cls.in_default_zoo and (transmitter or not cls.needs_transmitter):
            names.append(name)
    return names


def attack_checkpoint_path(root: Path, name: str) -> Path:
    """``<checkpoint folder>/attacks/<name>.safetensors``."""
    return Path(root) / "attacks" / f"{name}.safetensors"


def load_attack(name: str, bundle: Any, checkpoint_root: Path | None = None, checkpoint: Path | None = None,
                transmitter_checkpoint: Path | None = None, **options: Any) -> Attack:
    """Build the attack called ``name``, ready to run.

    A trainable attack reads its weights from ``checkpoint`` (default ``<checkpoint_root>/attacks/<name>.safetensors``,
    ``checkpoint_root`` defaulting to the committed ``checkpoints/<dataset>``). ``transmitter_checkpoint`` goes only
    to an attack that ``needs_transmitter``, which refuses to start without it."""
    cls = attack_class(name)
    if cls.needs_transmitter:
        if not transmitter_checkpoint:
            raise ConfigError(f"attack {name!r} reads the transmitter's encoder weights and must be enabled explicitly: "
                              "pass transmitter_checkpoint=<checkpoint folder> (CLI: --transmitter-checkpoint)")
        options["transmitter_checkpoint"] = transmitter_checkpoint
    att = cls(bundle, **options)
    if att.trainable:
        if checkpoint is None:
            from diffsem.defaults import checkpoint_dir

            checkpoint = attack_checkpoint_path(checkpoint_root or checkpoint_dir(bundle.cfg.dataset), cls.weights_name())
        load_attack_weights(att, Path(checkpoint))
    return att


def save_attack(att: Attack, path: Path, card: dict[str, Any]) -> None:
    mod = att.module()
    if mod is None:
        raise ConfigError(f"attack {att.name!r} has nothing to save")
    cfg = att.bundle.cfg
    save_weights(mod, path, {"attack": att.name, "model_id": att.bundle.model_id,
                             "config": cfg.model_dump(mode="json"), "options": att.options, **card})


def load_attack_weights(att: Attack, path: Path) -> dict[str, Any]:
    """Load ``att``'s weights; a checkpoint for another attack, data set or k is refused naming both sides."""
    owner = att.weights_name()
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint for attack {owner!r}; train one with "
                              f"`diffsem attack train --attack {owner} --dataset {att.bundle.cfg.dataset}`")
    card = read_card(path)
    if card.get("attack") != owner:
        raise CheckpointError(f"{path}: checkpoint is for attack {card.get('attack')!r} but {owner!r} was requested")
    stored = card.get("config", {})
    want = att.bundle.cfg.model_dump(mode="json")
    for key in ("dataset", "k"):
        if stored.get(key) != want[key]:
            raise CheckpointError(f"{path}: attack checkpoint has {key}={stored.get(key)!r} but the system it attacks "
                                  f"has {key}={want[key]!r}")
    mod = att.module()
    assert mod is not None
    card = load_weights(mod, path)
    mod.to(att.device).eval()
    return card
