"""A link's settings on the wire (``LinkSettings``) and in the core (:class:`diffsem.config.LinkConfig`): the proto
names the core's fields, the core declares each one's type, default, unit and bound, and building the core object
is the validation (docs/design.md §5, link settings). Nothing here names a link field.

``LinkSettings`` adds what only the wire has: an SNR trace and the ``clear_*`` switches; its ``antennas`` are the
core's :class:`~diffsem.phy.antennas.AntennaConfig` and :class:`~diffsem.phy.nullspace.NullSpaceConfig`
(:mod:`channel_emulator.antennas`).
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor

from channel_emulator import antennas
from diffsem.config import LinkConfig, build
from diffsem.phy import check_link
from protos.diffsem.v1 import channel_emulator_pb2 as pb

# The LinkSettings fields that carry a core setting: every scalar with presence and every repeated scalar.
FIELDS: tuple[FieldDescriptor, ...] = tuple(f for f in pb.LinkSettings.DESCRIPTOR.fields
                                            if f.message_type is None and (f.has_presence or f.is_repeated))


def is_set(s: pb.LinkSettings, field: FieldDescriptor) -> bool:
    """A field given in ``s``: present, or for a repeated field non-empty (an empty list means "keep")."""
    return len(getattr(s, field.name)) > 0 if field.is_repeated else s.HasField(field.name)


def to_proto(cfg: LinkConfig) -> pb.LinkSettings:
    """The wire form of core settings (a setting that is None, e.g. no SNR offset, stays unset)."""
    s = pb.LinkSettings()
    for field in FIELDS:
        value = getattr(cfg, field.name)
        if field.is_repeated:
            getattr(s, field.name).extend(value)
        elif value is not None:
            setattr(s, field.name, value)
    return s


def initial() -> pb.LinkSettings:
    """A new link's settings: every core default."""
    s = to_proto(LinkConfig())
    s.antennas.CopyFrom(antennas.initial())
    return s


def config(s: pb.LinkSettings, k: int | None = None) -> LinkConfig:
    """The core's settings of ``s`` (unset fields: the core's defaults), validated: the core's bounds field by field,
    its rules between fields and, with ``k``, the ofdm grid against frames of k real values. Raises ``ConfigError``
    (``OutOfRangeError`` for a value outside its bound) naming the field, its value and what is accepted."""
    values = {f.name: tuple(getattr(s, f.name)) if f.is_repeated else getattr(s, f.name) for f in FIELDS if is_set(s, f)}
    cfg = build(LinkConfig, **values)
    if k is not None:
        check_link(cfg, k)
    return cfg  # type: ignore[return-value]


def merged(current: pb.LinkSettings, update: pb.LinkSettings) -> pb.LinkSettings:
    """``current`` with the set fields of ``update`` (its antennas' too) and its ``clear_offset`` (not validated: see
    :func:`config`)."""
    out = pb.LinkSettings()
    for field in FIELDS:
        src = update if is_set(update, field) else current
        if field.is_repeated:
            getattr(out, field.name).extend(getattr(src, field.name))
        elif src.HasField(field.name):
            setattr(out, field.name, getattr(src, field.name))
    if update.clear_offset:
        out.ClearField("snr_offset_db")
    out.antennas.CopyFrom(antennas.merged(current.antennas, update.antennas))
    return out
