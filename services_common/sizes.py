"""How much one request may carry: frames per request and the most bytes per frame on the wire. Each service sizes
its largest accepted request from these (``max_request_bytes``; docs/design.md §5, "Bounded reads"), so a gRPC
server never reads more than its RPCs need. Importable without torch (a service binds its port before it loads it).
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_FRAMES = 4096  # frames in one request: a Transmit batch of images, a Send, a Feedback, a Decode, an Attack
MAX_ID_CHARS = 128  # a message id (the transmitter refuses longer ones)
SLACK_BYTES = 64 * 1024  # a request's fields besides its frames
IMAGE_BYTES = 28 * 28 * 4  # one float32 image
MAX_REPORTS = 64  # reports in one Telemetry.Report call (a listener sends its reports in chunks of this many)
# A Report's free-text fields, capped at the panel's door (control_panel/telemetry.py); listeners stay within them
MAX_METHOD_CHARS, MAX_ERROR_CHARS, MAX_JUDGE_CHARS, MAX_JUDGES = 128, 512, 64, 16
RECONSTRUCTION_BYTES = IMAGE_BYTES  # one (1, 28, 28) float32 image
# The most one Report takes within those caps: ids and texts (the threat model is capped as a method), a
# reconstruction, the judges' labels and the numbers
REPORT_BYTES = (MAX_ID_CHARS + 64 + 2 * MAX_METHOD_CHARS + MAX_ERROR_CHARS + RECONSTRUCTION_BYTES
                + MAX_JUDGES * (MAX_JUDGE_CHARS + 16) + 256)


def frame_bytes(k: int) -> int:
    """The most one ``Frame`` of k real values takes on the wire: its float32 symbols (4 k bytes), the header's CSI
    codes (k/2), a message id of at most :data:`MAX_ID_CHARS` and the header's other fields (model id, nonce, key
    check, numbers: under 512 bytes with protobuf's tags and lengths)."""
    return 4 * k + k // 2 + MAX_ID_CHARS + 512


def received_frame_bytes(k: int) -> int:
    """The most one ``ReceivedFrame`` takes: its frame, the per-RE noise (k/2 float32) and the link's fields."""
    return frame_bytes(k) + 2 * k + 256


def frames_request_bytes(k: int, received: bool = False) -> int:
    """The largest request of :data:`MAX_FRAMES` frames (``received``: as a listener gets them) of k values."""
    return MAX_FRAMES * (received_frame_bytes(k) if received else frame_bytes(k)) + SLACK_BYTES


def images_request_bytes() -> int:
    """The largest ``Transmit``: :data:`MAX_FRAMES` float32 images with their message ids."""
    return MAX_FRAMES * (IMAGE_BYTES + MAX_ID_CHARS + 16) + SLACK_BYTES


def bundle_k(checkpoints: Path) -> int | None:
    """The frame size k of a checkpoint bundle (``bundle.json``), read without loading it; None if it is unreadable
    (the service that loads the bundle says why)."""
    try:
        return int(json.loads((Path(checkpoints) / "bundle.json").read_text())["config"]["k"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
