"""Upload preprocessing (diffsem/imageio.py): limits before decoding, formats, MNIST-style normalisation."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from svc_helpers import huge_png_header, png_bytes

from diffsem.data import load_split
from diffsem.imageio import ImageError, ImageTooLarge, load_image


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    images, _ = load_split("mnist", "test")
    return (images[0, 0].numpy() * 255).round().astype(np.uint8)


def test_28x28_png_round_trips_exactly(digit: np.ndarray) -> None:
    out = load_image(png_bytes(digit))
    assert out.image.shape == (1, 28, 28) and out.image.dtype == np.float32
    np.testing.assert_array_equal(out.image[0], digit.astype(np.float32) / 255.0)


def test_large_dark_on_light_rgba_is_inverted_and_normalised(digit: np.ndarray) -> None:
    big = 255 - np.kron(digit, np.ones((6, 6), np.uint8))
    rgba = np.stack([big, big, big, np.full_like(big, 255)], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    out = load_image(buf.getvalue())
    assert out.info["inverted"] and out.info["resized"] and out.info["original_size"] == [168, 168]
    x = out.image[0]
    ys, xs = np.indices(x.shape)
    assert abs((ys * x).sum() / x.sum() - 13.5) < 1.5 and abs((xs * x).sum() / x.sum() - 13.5) < 1.5
    rows = np.flatnonzero((x > 0.1).any(axis=1))
    assert rows[-1] - rows[0] + 1 <= 21  # the longer side is scaled to 20 pixels


def test_npy_uint8_float_and_bool(digit: np.ndarray) -> None:
    for arr in (digit, digit.astype(np.float32) / 255.0, digit[None], digit > 128):
        buf = io.BytesIO()
        np.save(buf, arr)
        assert load_image(buf.getvalue()).image.shape == (1, 28, 28)


@pytest.mark.parametrize("data,err,words", [
    (b"", ImageError, "empty"),
    (b"GIF89a....", ImageError, "not a PNG, JPEG or .npy"),
    (huge_png_header(), ImageTooLarge, "20000x20000"),
    (huge_png_header(5000, 10), ImageTooLarge, "5000x10"),
    (b"\x89PNG\r\n\x1a\n", ImageError, "truncated"),
])
def test_bad_inputs(data: bytes, err: type, words: str) -> None:
    with pytest.raises(err, match=words):
        load_image(data)


def test_truncated_png_and_jpeg(digit: np.ndarray) -> None:
    with pytest.raises(ImageError, match="truncated"):
        load_image(png_bytes(digit)[:-30])
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt JPEG"):
        load_image(buf.getvalue()[:200])


def test_byte_limit_and_npy_limits() -> None:
    with pytest.raises(ImageTooLarge, match="over the limit"):
        load_image(b"\x89PNG" + b"\0" * 100, max_bytes=50)
    for arr, words in ((np.zeros((3, 28, 28), np.uint8), "shape"), (np.full((28, 28), np.nan), "finite"),
                       (np.full((28, 28), 300, np.int32), r"\[0, 255\]"), (np.zeros((28, 28), complex), "dtype")):
        buf = io.BytesIO()
        np.save(buf, arr)
        with pytest.raises(ImageError, match=words):
            load_image(buf.getvalue())
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (20000, 20000)})
    with pytest.raises(ImageTooLarge, match="20000x20000"):
        load_image(header.getvalue())  # the header alone: no pixel data is ever read


def test_the_control_panel_never_loads_torch() -> None:
    """The panel only routes bytes and counts (docs/design.md §5); torch alone would cost it about 220 MB resident."""
    code = ("import sys, control_panel.__main__, control_panel.app, control_panel.state, control_panel.routers.images\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print(' '.join(loaded[:5]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the panel imported {out.stdout.strip()}"
