"""Every listener's decision on every image of one condition, offline: what a seeded live run must give, image by
image (docs/design.md §5, live equals offline).

One (SNR, t*) condition, its links made as ``diffsem eval`` makes them (:func:`diffsem.framepath.condition_links`:
the legitimate link and one eavesdropper link per offset, each seeded from (seed, role, SNR, t*)), the images sent
in batches through the frame path. The receiver decodes each batch; each eavesdropper runs its attack on its view
with the frames' public header, and an attack that gives reconstructions is labelled by the panel of judges, as
the eavesdropper service does. The live-vs-offline agreement test and ``benchmarks/live_stack.py`` compare a live
run's decisions with these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffsem.attacks import load_attack
from diffsem.bundle import encode_all
from diffsem.framepath import LEGIT, condition_links, eve_role, send
from diffsem.judges import load_panel
from diffsem.receiver import DiffusionReceiver

FLAT = {"phy": "flat", "fading": "none", "coherence_frames": 1}
# The conditions live equals offline is shown on (the agreement test, benchmarks/live_stack.py): every link's settings
CONDITIONS: dict[str, dict[str, Any]] = {
    "flat-awgn": FLAT,
    "flat-rayleigh": FLAT | {"fading": "rayleigh"},
    "flat-rayleigh-blocks-of-8": FLAT | {"fading": "rayleigh", "coherence_frames": 8},
    "ofdm-tdl-a-ls": {"phy": "ofdm", "channel_model": "TDL-A", "delay_spread_ns": 100.0, "speed_kmh": 3.0,
                      "estimator": "ls", "feedback_delay": 1},
}


@dataclass
class Eavesdropper:
    """One eavesdropper of the condition: its attack and its SNR offset from the legitimate link (dB)."""

    attack: str
    offset_db: float


@dataclass
class Decisions:
    """Per image (N,): ``labels[name]``, each listener's label (an attack's own, else its first judge's, as the
    eavesdropper service reports it), and ``judged[name][judge]``, each judge's label of an eavesdropper's
    reconstructions (an attack that gives no labels)."""

    labels: dict[str, list[int]] = field(default_factory=dict)
    judged: dict[str, dict[str, list[int]]] = field(default_factory=dict)


@torch.no_grad()
def decisions(bundle: Any, images: torch.Tensor, snr_db: float, t_star: int | None, seed: int,
              settings: Mapping[str, Any], eavesdroppers: Mapping[str, Eavesdropper], checkpoint_root: Path,
              batch_size: int, mode: str = "selfref", steps: int = 1, classifier: str = "matched",
              legit: str = "receiver", judges: list[str] | None = None) -> Decisions:
    """The offline decisions of one condition.

    Input: images (N, 1, 28, 28) in [0, 1]; ``settings``: the other LinkConfig fields of every link (fading, PHY);
    ``eavesdroppers``: name -> attack and offset (distinct offsets: each names its link's seed); ``batch_size``: the
    frames per send, as the live run's batches; ``judges``: the panel's names (default: every judge of
    ``checkpoint_root``, as an eavesdropper's ``--judges``), each attack's adapted judge added. Output:
    :class:`Decisions`, the receiver's under ``legit``."""
    links, gens = condition_links(bundle.cfg.k, seed, snr_db, t_star, [e.offset_db for e in eavesdroppers.values()],
                                  settings)
    receiver = DiffusionReceiver(bundle, steps=steps, classifier=classifier)
    attacks = {name: load_attack(e.attack, bundle, checkpoint_root=checkpoint_root) for name, e in eavesdroppers.items()}
    panel = load_panel(bundle, checkpoint_root, judges, [e.attack for e in eavesdroppers.values()])
    out = Decisions({legit: [], **{name: [] for name in eavesdroppers}})
    s_all = encode_all(bundle, images.to(bundle.device)).cpu()
    for i in range(0, len(s_all), batch_size):
        sent = send(s_all[i:i + batch_size], t_star, bundle.abar, links, gens)
        v = sent.views[LEGIT]
        out.labels[legit] += receiver.decode(v.z, v.abar_eff, mode).labels.tolist()
        for name, eve in eavesdroppers.items():
            view = sent.views[eve_role(eve.offset_db)]
            labels, recs = attacks[name].attack(view.z, view.abar_eff, sent.header)
            if labels is None and recs is not None:  # an inversion attack: the judges read its reconstructions
                judged = panel.labels(recs, eve.attack)
                for judge, lab in judged.items():
                    out.judged.setdefault(name, {}).setdefault(judge, []).extend(lab.tolist())
                labels = next(iter(judged.values()))
            out.labels[name] += labels.tolist()
    return out
