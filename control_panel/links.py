"""``PUT /api/links``'s body and its conversion: the proto ``LinkSettings`` carries a link's settings, the core's
``LinkConfig`` declares them.

Each link's JSON is converted with protobuf's ``json_format.ParseDict`` (field names as in the proto, snake_case
or camelCase; enums by name, e.g. ``"interp": "INTERP_LINEAR"``): the panel keeps no list of fields, and the
channel emulator validates their values by building the core's settings (docs/design.md §5). Traces come as
points or CSV content (``trace.points`` / ``trace.csv``) or by name from the emulator's trace folder, never a path.

The change is atomic across the emulator and the transmitter: both check it with ``validate_only`` before either
applies it.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field

from control_panel.errors import Upstream
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import common_pb2, transmitter_pb2
from services_common.client import SHORT_DEADLINE_S


class LinksPatch(BaseModel):
    """PUT /api/links body: per-link settings by link name, and the transmitter's privacy level."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    links: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="link name -> diffsem.v1.LinkSettings in JSON; fields left out keep "
        "their value (SNRs in dB, times in ms)")
    t_star: int | None = Field(None, description="privacy level t* in [0, T)")
    self_noise: bool | None = Field(None, description="false: send plain frames; true needs t_star")
    tx_seed: int | None = Field(None, description="restart the self-noise generator from this seed")

    def changes_t_star(self) -> bool:
        return self.t_star is not None or self.self_noise is not None


def _finite(value: Any, where: str) -> None:
    """Refuse NaN and infinities anywhere, as numbers or as the strings protobuf's JSON would take for them. The
    emulator refuses them too, but json_format meets a bare NaN first and answers "use quoted NaN", which misleads."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, v in items:
        _finite(v, f"{where}.{key}")
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return
    if isinstance(number, float) and not math.isfinite(number):
        raise json_format.ParseError(f"{where}: {value!r} is not a finite number; numbers must be finite")


def link_updates(links: dict[str, dict[str, Any]]) -> list[ch_pb.LinkUpdate]:
    """Each link's JSON as a ``LinkUpdate``; ParseError (422) naming the link and the field."""
    updates = []
    for name, body in links.items():
        _finite(body, f"links.{name}")
        try:
            settings = json_format.ParseDict(body, ch_pb.LinkSettings())
        except json_format.ParseError as exc:
            raise json_format.ParseError(f"links.{name}: {exc}") from None
        updates.append(ch_pb.LinkUpdate(name=name, settings=settings))
    return updates


def transmitter_config(patch: LinksPatch) -> transmitter_pb2.TransmitterConfig | None:
    if not patch.changes_t_star() and patch.tx_seed is None:
        return None
    if patch.self_noise and patch.t_star is None:
        raise json_format.ParseError("self_noise=true needs a t_star")
    body: dict[str, Any] = {"disable_self_noise": patch.self_noise is False}
    if patch.t_star is not None and patch.self_noise is not False:
        body["t_star"] = patch.t_star
    if patch.tx_seed is not None:
        body["seed"] = patch.tx_seed
    try:
        return json_format.ParseDict(body, transmitter_pb2.TransmitterConfig())
    except json_format.ParseError as exc:
        raise json_format.ParseError(str(exc).replace("TransmitterConfig.", "")) from None


async def apply(emu: Upstream, tx: Upstream, patch: LinksPatch) -> None:
    """Validate on both services, then apply on both: a refused change applies nothing."""
    updates = link_updates(patch.links)
    tx_cfg = transmitter_config(patch)
    emu_req = ch_pb.ConfigureRequest(links=updates)
    if updates:
        await emu.call("Configure", ch_pb.ConfigureRequest(links=updates, validate_only=True), SHORT_DEADLINE_S)
    if tx_cfg is not None:
        check = transmitter_pb2.TransmitterConfig()
        check.CopyFrom(tx_cfg)
        check.validate_only = True
        await tx.call("Configure", check, SHORT_DEADLINE_S)
    if updates:
        await emu.call("Configure", emu_req, SHORT_DEADLINE_S)
    if tx_cfg is not None:
        await tx.call("Configure", tx_cfg, SHORT_DEADLINE_S)


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


COUNTERS = ("queue_depth", "frames_in", "delivered", "dropped_queue", "lost", "late", "no_listener")


def link_json(lk: ch_pb.LinkState) -> dict[str, Any]:
    """A link's settings (from ``LinkState.settings``, the schema's fields, and its ``antennas``) plus its live state
    and counters."""
    settings = {f.name: list(v) if f.is_repeated else v for f, v in lk.settings.ListFields()
                if f.message_type is None and not f.name.startswith("clear_")}
    antennas = {f.name: v for f, v in lk.settings.antennas.ListFields()}  # as set: n_tx, n_rx, CSI, ...
    return {**settings, "snr_offset_db": settings.get("snr_offset_db"), "antennas": antennas,
            "role": common_pb2.Role.Name(lk.role).removeprefix("ROLE_").lower(), "attached": lk.attached,
            "seeded": lk.seeded,
            "snr_db": lk.snr_db, "sigma_c2": _finite_or_none(lk.sigma_c2), "trace": lk.has_trace,
            **{name: getattr(lk, name) for name in COUNTERS}, "subcarrier_snr_db": subcarrier_snr(lk)}


def subcarrier_snr(lk: ch_pb.LinkState) -> list[list[float]]:
    """An ofdm link's recent frames' SNR per subcarrier (dB) as rows (frames x fft_size), oldest first; [] if flat."""
    f = lk.settings.fft_size or 1
    v = [round(x, 2) for x in lk.subcarrier_snr_db]
    return [v[i:i + f] for i in range(0, len(v) - f + 1, f)]
