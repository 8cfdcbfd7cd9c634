"""Uploaded images -> the model's input: one 28x28 grayscale image in [0, 1], a NumPy array (1, 28, 28) float32.

NumPy and Pillow only (no torch): the control panel preprocesses uploads and stays light.

Accepted formats, recognised by their first bytes (never by the file name):

- **PNG** and **JPEG** (Pillow), any mode (grayscale, RGB, palette, with alpha);
- **NumPy .npy** (``allow_pickle=False``): a 2-D (H, W) array, or (1, H, W) / (H, W, 1); uint8 in [0, 255],
  bool, or float in [0, 1] (floats up to 255 are read as 0-255 and divided by 255).

Limits, checked **before** any pixel is decoded: at most ``max_bytes`` of input (:class:`ImageTooLarge`,
HTTP 413), and at most ``max_side`` pixels per side and ``max_pixels`` in all as declared by the PNG/JPEG
header or the .npy header (:class:`ImageTooLarge`). An empty file, a non-image, a truncated or corrupt
file, or values outside the accepted range raise :class:`ImageError` (HTTP 400) with a message.

Preprocessing, in order:

1. **Grayscale**: images with transparency are composited onto a white background (like a drawing on
   paper), then converted to luminance (Pillow mode "L", ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B)
   and scaled to [0, 1]. EXIF orientation is applied first.
2. **Polarity**: MNIST digits are bright on black. If the mean of the image's one-pixel border is above 0.5
   (a dark digit on light paper), the image is inverted (1 - x).
3. **Size**: an image already 28x28 is kept pixel for pixel (so an MNIST image saved as PNG round-trips
   exactly). Any other size gets MNIST's own normalisation: crop to the bounding box of pixels above 0.1
   (the whole image when there are none), scale the longer side to 20 pixels keeping the aspect ratio
   (Pillow's antialiasing ``LANCZOS`` filter), and paste it into a black 28x28 canvas so that its centre
   of mass lies at the centre (14, 14), clipped to stay inside the canvas.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from diffsem.errors import DiffSemError

MAX_BYTES = 5 * 1024 * 1024       # 5 MiB of upload
MAX_SIDE = 4096                   # pixels per side, from the header
MAX_PIXELS = 4096 * 4096          # pixels in all, from the header
SIDE = 28
BOX = 20

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
NPY_MAGIC = b"\x93NUMPY"


class ImageError(DiffSemError, ValueError):
    """An upload that is not a usable image (empty, not PNG/JPEG/.npy, truncated, bad values)."""


class ImageTooLarge(ImageError):
    """An upload over the byte limit, or whose header declares too many pixels."""


@dataclass
class Preprocessed:
    """image: (1, 28, 28) float32 in [0, 1]. info: what was done (format, original size, inverted, resized)."""

    image: np.ndarray
    info: dict[str, object] = field(default_factory=dict)


def sniff(data: bytes) -> str:
    """``png``, ``jpeg`` or ``npy`` from the first bytes; ImageError otherwise."""
    if not data:
        raise ImageError("empty file: upload a PNG, JPEG or .npy image")
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(NPY_MAGIC):
        return "npy"
    raise ImageError("not a PNG, JPEG or .npy file (unrecognised first bytes)")


def _check_dims(width: int, height: int, max_side: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image header declares an empty size {width}x{height}")
    if width > max_side or height > max_side or width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {max_side} per side and "
                            f"{max_pixels} in all (rejected from its header, nothing decoded)")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding anything."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("truncated or corrupt PNG: no IHDR header")
    return struct.unpack(">II", data[16:24])


def _read_pil(data: bytes, fmt: str, max_side: int, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    if fmt == "png":
        _check_dims(*png_size(data), max_side, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["PNG" if fmt == "png" else "JPEG"])
            _check_dims(img.width, img.height, max_side, max_pixels)  # JPEG: from the SOF marker, lazily
            img.load()
            img = ImageOps.exif_transpose(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image too large to decode safely: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageError(f"truncated or corrupt {fmt.upper()}: {exc}") from None
    size = img.size
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(back, rgba)
    gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return gray, size


def _read_npy(data: bytes, max_side: int, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read(buf)  # the header only, no data
    except (ValueError, OSError, SyntaxError) as exc:
        raise ImageError(f"corrupt .npy header: {exc}") from None
    dims = [d for d in shape if d != 1] if len(shape) == 3 else list(shape)
    if len(shape) not in (2, 3) or len(dims) != 2 or (len(shape) == 3 and 1 not in (shape[0], shape[2])):
        raise ImageError(f".npy array of shape {shape}; expected (H, W), (1, H, W) or (H, W, 1)")
    height, width = dims
    _check_dims(width, height, max_side, max_pixels)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise ImageError(f".npy dtype {dtype} not supported; use uint8, bool or float")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ImageError(f"truncated or corrupt .npy: {exc}") from None
    arr = arr.reshape(height, width)
    if arr.dtype.kind == "b":
        x = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        if arr.min() < 0 or arr.max() > 255:
            raise ImageError(f".npy integer values must be in [0, 255], got [{arr.min()}, {arr.max()}]")
        x = arr.astype(np.float32) / 255.0
    else:
        x = arr.astype(np.float32)
        if not np.isfinite(x).all():
            raise ImageError(".npy float values must be finite (no NaN or inf)")
        if x.min() < 0 or x.max() > 255:
            raise ImageError(f".npy float values must be in [0, 1] (or [0, 255]), got [{x.min():.3g}, {x.max():.3g}]")
        if x.max() > 1:
            x = x / 255.0
    return x, (width, height)


def normalise_digit(x: np.ndarray) -> np.ndarray:
    """MNIST-style normalisation of a grayscale (H, W) image in [0, 1], bright digit on black -> (28, 28)."""
    mask = x > 0.1
    if mask.any():
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        x = x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = x.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(np.clip(x * 255.0, 0, 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS)
    s = np.asarray(small, dtype=np.float32) / 255.0
    total = s.sum()
    cy, cx = ((np.indices(s.shape) * s).reshape(2, -1).sum(1) / total) if total > 0 else ((nh - 1) / 2, (nw - 1) / 2)
    top = int(np.clip(round(SIDE / 2 - 0.5 - cy), 0, SIDE - nh))
    left = int(np.clip(round(SIDE / 2 - 0.5 - cx), 0, SIDE - nw))
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top:top + nh, left:left + nw] = s
    return out


def load_image(data: bytes, max_bytes: int = MAX_BYTES, max_side: int = MAX_SIDE,
               max_pixels: int = MAX_PIXELS) -> Preprocessed:
    """Bytes of a PNG, JPEG or .npy upload -> :class:`Preprocessed` (see the module docstring)."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"upload of {len(data)} bytes is over the limit of {max_bytes} bytes")
    fmt = sniff(data)
    if fmt == "npy":
        x, size = _read_npy(data, max_side, max_pixels)
    else:
        x, size = _read_pil(data, fmt, max_side, max_pixels)
    border = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])
    inverted = bool(border.mean() > 0.5)
    if inverted:
        x = 1.0 - x
    resized = x.shape != (SIDE, SIDE)
    if resized:
        x = normalise_digit(x)
    image = np.clip(np.ascontiguousarray(x, dtype=np.float32), 0, 1)[None]
    return Preprocessed(image, {"format": fmt, "original_size": list(size), "inverted": inverted,
                                "resized": resized})
