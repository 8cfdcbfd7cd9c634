"""Weights as safetensors (never pickle) plus a JSON card per file (docs/design.md §7).

A card records the model config, the data set and its checksums, the seed, training time, metrics and the
code version. :func:`load_weights` refuses a checkpoint whose card does not match what the caller asked for
and names both sides.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from diffsem.config import ModelConfig
from diffsem.errors import CheckpointError

STORE_DTYPE = torch.float16  # halves the committed size; measured numbers are always taken after this round trip


def code_version() -> str:
    """``git describe`` of the source tree, or the package version when not in a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    from diffsem import __version__

    return __version__


def save_weights(module: nn.Module, path: Path, card: dict[str, Any]) -> None:
    """Write ``path`` (.safetensors, float16) and ``path.with_suffix('.json')`` (the card)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.to(STORE_DTYPE) if v.is_floating_point() else v).contiguous().cpu()
               for k, v in module.state_dict().items()}
    save_file(tensors, str(path))
    path.chmod(0o644)  # safetensors writes 0600; containers run the services as another user and must read it
    full = {"file": path.name, "code_version": code_version(), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **card}
    path.with_suffix(".json").write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")


def read_card(path: Path) -> dict[str, Any]:
    card_path = path.with_suffix(".json")
    if not card_path.exists():
        raise CheckpointError(f"{card_path}: card missing (every .safetensors needs its JSON card)")
    try:
        return json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{card_path}: not valid JSON ({exc})") from None


def check_card(where: Path, card: dict[str, Any], expected: ModelConfig | None, model_id: str | None) -> None:
    """Raise ``CheckpointError`` when the card's config or model id differs from what was asked for."""
    if expected is not None:
        stored = card.get("config", {})
        for key, want in expected.model_dump(mode="json").items():
            have = stored.get(key)
            if have != want:
                raise CheckpointError(f"{where}: checkpoint has {key}={have!r} but {key}={want!r} was requested")
    if model_id is not None and card.get("model_id") != model_id:
        raise CheckpointError(f"{where}: checkpoint is model {card.get('model_id')!r} but {model_id!r} was requested")


def load_weights(module: nn.Module, path: Path, expected: ModelConfig | None = None,
                 model_id: str | None = None) -> dict[str, Any]:
    """Load ``path`` into ``module`` after checking its card; return the card."""
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found (train one with `diffsem train`)")
    card = read_card(path)
    check_card(path, card, expected, model_id)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    state = module.state_dict()
    if set(tensors) != set(state) or any(tensors[k].shape != state[k].shape for k in state):
        raise CheckpointError(f"{path}: tensor names or shapes do not match {type(module).__name__} for this config")
    module.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()})
    return card
