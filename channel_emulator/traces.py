"""SNR traces: a link's SNR (dB) as a function of time, piecewise constant or linear.

A trace is a list of ``(t_s, snr_db)`` points with increasing times, starting when it is configured.
Before the first point the first value holds; after the last one the last value holds, or with ``loop`` the
trace repeats with period ``t_last`` (``t_last`` must then be > 0).

Files (``--trace LINK=FILE`` or ``SnrTrace.file``):

- JSON: ``{"interp": "linear" | "step", "loop": false, "points": [[0, 20], [10, 0], ...]}``
- CSV: one ``t_s,snr_db`` pair per line; ``#`` starts a comment; a first line ``# interp=linear`` or
  ``# interp=step, loop`` sets the options (default step, no loop).
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from pathlib import Path

from services_common.errors import BadRequest

MAX_POINTS = 100_000


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
                raise BadRequest(f"SNR trace point ({t}, {v}): time and SNR must be finite numbers")
        if self.times[0] < 0 or any(b <= a for a, b in zip(self.times[:-1], self.times[1:], strict=True)):
            raise BadRequest(f"SNR trace times must start at >= 0 and strictly increase, got {list(self.times)[:8]}")
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


def load_trace(path: str | Path) -> SnrTrace:
    """Read a JSON or CSV trace file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadRequest(f"cannot read SNR trace file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
            interp = spec.get("interp", "step")
            if interp not in ("step", "linear"):
                raise BadRequest(f"{path}: interp={interp!r}, use 'step' or 'linear'")
            return from_points([tuple(p) for p in spec["points"]], interp == "linear", bool(spec.get("loop", False)))
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, BadRequest):
                raise
            raise BadRequest(f"{path}: not a trace JSON ({{'points': [[t_s, snr_db], ...]}}): {exc}") from None
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
            raise BadRequest(f"{path}:{n}: expected 't_s,snr_db', got {row!r}") from None
        points.append((t, v))
    return from_points(points, linear, loop)
