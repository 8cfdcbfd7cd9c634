"""Tensor messages: raw little-endian bytes in C order, a shape and a dtype (``diffsem.v1.Tensor``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from protos.diffsem.v1 import common_pb2
from services_common.errors import BadRequest

if TYPE_CHECKING:  # torch is imported only where a tensor is made, so the control panel never loads it
    import torch

_NP_OF = {
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DTYPE_FLOAT64: np.dtype("<f8"),
    common_pb2.DTYPE_FLOAT16: np.dtype("<f2"),
    common_pb2.DTYPE_INT64: np.dtype("<i8"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_UINT8: np.dtype("u1"),
    common_pb2.DTYPE_BOOL: np.dtype("?"),
}
_PROTO_OF = {(v.kind, v.itemsize): k for k, v in _NP_OF.items()}
MAX_ELEMENTS = 1 << 28


def dtype_name(dtype: int) -> str:
    """``DTYPE_FLOAT32`` -> ``float32``."""
    try:
        return common_pb2.DType.Name(dtype).removeprefix("DTYPE_").lower()
    except ValueError:
        return f"unknown({dtype})"


def _encoded(value: np.ndarray | torch.Tensor) -> tuple[np.ndarray, int, bytes]:
    """(array, dtype code, little-endian C-order bytes) of an array or tensor."""
    arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)  # a torch.Tensor
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _PROTO_OF:
        raise BadRequest(f"cannot send dtype {arr.dtype}; supported: {', '.join(str(d) for d in _NP_OF.values())}")
    code = _PROTO_OF[key]
    return arr, code, np.ascontiguousarray(arr, dtype=_NP_OF[code]).tobytes()


def to_proto(value: np.ndarray | torch.Tensor) -> common_pb2.Tensor:
    """Any supported array or tensor -> Tensor message (bytes are little-endian, C order)."""
    arr, code, data = _encoded(value)
    return common_pb2.Tensor(data=data, shape=list(arr.shape), dtype=code)


def rows_to_proto(batch: np.ndarray | torch.Tensor) -> list[common_pb2.Tensor]:
    """A batch (B, ...) -> one Tensor message per row, each as :func:`to_proto` of that row would give. The batch is
    converted once, not row by row (the per-frame hot path of the transmitter and the emulator)."""
    arr, code, data = _encoded(batch)
    step = len(data) // len(arr) if len(arr) else 0
    return [common_pb2.Tensor(data=data[i * step:(i + 1) * step], shape=list(arr.shape[1:]), dtype=code)
            for i in range(len(arr))]


def to_numpy(msg: common_pb2.Tensor, what: str = "tensor", dtypes: Sequence[int] | None = None,
             shape: Sequence[int | None] | None = None) -> np.ndarray:
    """Tensor message -> NumPy array (native byte order), checked.

    ``dtypes``: accepted dtype codes. ``shape``: expected shape, ``None`` entries match any size.
    Raises :class:`BadRequest` naming ``what``, the received and the expected shape or dtype.
    """
    if msg.dtype not in _NP_OF:
        raise BadRequest(f"{what}: dtype {dtype_name(msg.dtype)} is not supported")
    if dtypes is not None and msg.dtype not in dtypes:
        want = " or ".join(dtype_name(d) for d in dtypes)
        raise BadRequest(f"{what}: dtype {dtype_name(msg.dtype)}, expected {want}")
    dims = list(msg.shape)
    if any(d < 0 for d in dims):
        raise BadRequest(f"{what}: negative size in shape {dims}")
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if n > MAX_ELEMENTS:
        raise BadRequest(f"{what}: shape {dims} has {n} elements, more than the limit {MAX_ELEMENTS}")
    dt = _NP_OF[msg.dtype]
    if len(msg.data) != n * dt.itemsize:
        raise BadRequest(f"{what}: {len(msg.data)} bytes do not match shape {dims} of {dtype_name(msg.dtype)} "
                         f"({n * dt.itemsize} bytes expected)")
    if shape is not None and (len(shape) != len(dims)
                              or any(e is not None and e != d for e, d in zip(shape, dims, strict=True))):
        want = "(" + ", ".join("*" if e is None else str(e) for e in shape) + (",)" if len(shape) == 1 else ")")
        raise BadRequest(f"{what}: shape {tuple(dims)}, expected {want}")
    return np.frombuffer(msg.data, dtype=dt).reshape(dims).astype(dt.newbyteorder("="), copy=True)


def to_torch(msg: common_pb2.Tensor, what: str = "tensor", dtypes: Sequence[int] | None = None,
             shape: Sequence[int | None] | None = None) -> torch.Tensor:
    """Tensor message -> torch tensor on the CPU (see :func:`to_numpy`)."""
    import torch

    return torch.from_numpy(to_numpy(msg, what, dtypes, shape))
