"""A batch's symbols read frame by frame (``symbols_of``, stacked) against in one go (``symbols_matrix``): 500 frames
of k = 256, 20 alternating repetitions, medians, one torch thread as the services use (BENCHMARKS.md, "Live
against in-process throughput")::

    .venv/bin/python benchmarks/frame_symbols.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from protos.diffsem.v1 import frame_pb2  # noqa: E402
from services_common.frames import symbols_matrix, symbols_of  # noqa: E402
from services_common.tensors import rows_to_proto  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)  # as the services run (--threads 1)
    rows = rows_to_proto(torch.randn(500, 256))
    frames = [frame_pb2.Frame(message_id=f"m{i}", seq=i, symbols=rows[i]) for i in range(500)]
    assert torch.equal(symbols_matrix(frames), torch.stack([symbols_of(f) for f in frames]))
    res: dict[str, list[float]] = {"frame by frame": [], "in one go": []}
    for _ in range(20):
        t = time.perf_counter()
        torch.stack([symbols_of(f, None, "frame") for f in frames])
        res["frame by frame"].append(time.perf_counter() - t)
        t = time.perf_counter()
        symbols_matrix(frames, None, "frame")
        res["in one go"].append(time.perf_counter() - t)
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    for k, v in med.items():
        print(f"{k}: median {v * 1000:.2f} ms per 500 frames ({v / 500 * 1e6:.1f} us/frame)")
    print(f"ratio {med['in one go'] / med['frame by frame']:.3f}")


if __name__ == "__main__":
    main()
