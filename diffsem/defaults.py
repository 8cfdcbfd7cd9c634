"""Names and places every process agrees on, importable without torch (service settings, the launcher)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
KEY_ENV = "DIFFSEM_SELF_NOISE_KEY"  # the keyed self-noise secret, in hex (docs/design.md §3)


def checkpoint_dir(dataset: str, root: Path | None = None) -> Path:
    """The committed checkpoint folder of ``dataset`` (under ``root``, default the repository's checkpoints/)."""
    return (root or DEFAULT_CHECKPOINTS) / dataset
