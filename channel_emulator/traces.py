"""SNR traces: a link's SNR (dB) as a function of time, piecewise constant or linear.

A trace is a list of ``(t_s, snr_db)`` points with increasing times, starting when it is configured.
Before the first point the first value holds; after the last one the last value holds, or with ``loop`` the
trace repeats with period ``t_last`` (``t_last`` must then be > 0).

Where a trace comes from (the API takes no filesystem paths; docs/design.md §8 has the audit):

- ``SnrTrace.points`` in the request;
- ``SnrTrace.csv``: CSV content in the request, at most :data:`MAX_CSV_BYTES`;
- ``SnrTrace.name``: a file in the folder given at start-up (``--trace-dir``), by validated file name;
- ``--trace LINK=FILE`` at start-up (the operator's path).

Formats:

- JSON: ``{"interp": "linear" | "step", "loop": false, "points": [[0, 20], [10, 0], ...]}``
- CSV: one ``t_s,snr_db`` pair per line; ``#`` starts a comment; a first line ``# interp=linear`` or
  ``# interp=step, loop`` sets the options (default step, no loop).
"""

from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from services_common.errors import BadRequest, NotFound

MAX_POINTS = 100_000
MAX_CSV_BYTES = 1 << 20
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\.(csv|json)$")


@dataclass(frozen=True)
class SnrTrace:
    """times (s, increasing), values (dB), ``linear`` interpolation or steps, ``loop``."""

    times: tuple[float, ...]
    values: tuple[float, ...]
    linear: bool = False
    loop: bool = False

    def __post_init__(self) -> None:
        if not self.times:
            raise BadRequest("an SNR trace needs at least one (t_s, snr_db) point")
        if len(self.times) != len(self.values) or len(self.times) > MAX_POINTS:
            raise BadRequest(f"an SNR trace needs matching times and values, at most {MAX_POINTS} points")
        for t, v in zip(self.times, self.values, strict=True):
            if not (math.isfinite(t) and math.isfinite(v)):
                raise BadRequest("SNR trace points: time and SNR must be finite numbers")
        if self.times[0] < 0 or any(b <= a for a, b in zip(self.times[:-1], self.times[1:], strict=True)):
            raise BadRequest("SNR trace times must start at >= 0 and strictly increase")
        if self.loop and self.times[-1] <= 0:
            raise BadRequest("a looping SNR trace needs its last time > 0 (the period)")

    def value(self, t: float) -> float:
        """SNR in dB ``t`` seconds after the trace started."""
        if self.loop:
            t = t % self.times[-1]
        if t <= self.times[0]:
            return self.values[0]
        if t >= self.times[-1]:
            return self.values[-1]
        i = bisect.bisect_right(self.times, t) - 1
        if not self.linear:
            return self.values[i]
        t0, t1, v0, v1 = self.times[i], self.times[i + 1], self.values[i], self.values[i + 1]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def from_points(points: list[tuple[float, float]], linear: bool, loop: bool) -> SnrTrace:
    return SnrTrace(tuple(float(p[0]) for p in points), tuple(float(p[1]) for p in points), linear, loop)


def parse_csv(text: str, what: str = "SNR trace CSV") -> SnrTrace:
    """Rows ``t_s,snr_db`` (see the module docstring). Errors name the line, never its content."""
    if len(text.encode()) > MAX_CSV_BYTES:
        raise BadRequest(f"{what}: {len(text.encode())} bytes, at most {MAX_CSV_BYTES}")
    linear, loop, points = False, False, []
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)
        if len(body) > 1 and n == 1:
            opts = body[1].replace(" ", "").lower()
            linear, loop = "interp=linear" in opts, "loop" in opts
        row = body[0].strip()
        if not row:
            continue
        try:
            t, v = (float(c) for c in row.split(","))
        except ValueError:
            raise BadRequest(f"{what}, line {n}: expected two numbers 't_s,snr_db'") from None
        points.append((t, v))
        if len(points) > MAX_POINTS:
            raise BadRequest(f"{what}: more than {MAX_POINTS} points")
    return from_points(points, linear, loop)


def parse_json(text: str, what: str = "SNR trace JSON") -> SnrTrace:
    """``{"interp": "linear" | "step", "loop": false, "points": [[t_s, snr_db], ...]}``; errors quote no content."""
    if len(text.encode()) > MAX_CSV_BYTES:
        raise BadRequest(f"{what}: {len(text.encode())} bytes, at most {MAX_CSV_BYTES}")
    try:
        spec = json.loads(text)
        interp = spec.get("interp", "step")
        points = [(float(t), float(v)) for t, v in spec["points"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadRequest(f"{what}: not a trace object {{'points': [[t_s, snr_db], ...]}}") from None
    if interp not in ("step", "linear"):
        raise BadRequest(f"{what}: interp must be 'step' or 'linear'")
    return from_points(points, interp == "linear", bool(spec.get("loop", False)))


def load_trace(path: str | Path) -> SnrTrace:
    """Read a JSON or CSV trace file named by the operator (``--trace LINK=FILE``; never from the API)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read SNR trace file {path}: {getattr(exc, 'strerror', None) or 'not text'}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return parse_json(text, str(path))
    return parse_csv(text, str(path))


def load_named(trace_dir: Path | None, name: str) -> SnrTrace:
    """The trace file ``name`` in the emulator's ``--trace-dir``. ``name`` is a file name, never a path: it must
    match :data:`NAME_RE` and resolve to a regular file directly inside the folder (no links out of it)."""
    if trace_dir is None:
        raise BadRequest("SnrTrace.name needs a trace folder: this emulator was started without --trace-dir")
    if not NAME_RE.match(name):
        raise BadRequest("SnrTrace.name must be a file name of 1-128 letters, digits, '_', '-' and '.', starting "
                         "with a letter or digit, ending in .csv or .json (no folders)")
    folder = trace_dir.resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        available = sorted(p.name for p in folder.iterdir() if p.is_file() and NAME_RE.match(p.name))[:20]
        raise NotFound(f"no trace named {name!r} in the trace folder; available: {', '.join(available) or 'none'}")
    return load_trace(path)
