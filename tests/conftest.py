"""Shared fixtures. Data comes from the real loaders; the data dir is $DIFFSEM_DATA_DIR (see .ci/run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from diffsem.bundle import ModelBundle, load_bundle
from diffsem.cli import main as diffsem_main
from diffsem.defaults import DEFAULT_CHECKPOINTS

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def mnist_bundle() -> ModelBundle:
    """The committed default MNIST checkpoints."""
    return load_bundle(DEFAULT_CHECKPOINTS / "mnist", device="cpu")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass
class CliRun:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """``diffsem ARGS...`` run in this process: the same parser, one-line errors and exit codes as the command, without
    an interpreter start-up (about 4 s with torch) per call. ``test_config_and_cli`` also runs one in a fresh process."""

    def run(*args: str) -> CliRun:
        capsys.readouterr()
        try:
            code = diffsem_main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        cap = capsys.readouterr()
        return CliRun(code, cap.out, cap.err)

    return run
