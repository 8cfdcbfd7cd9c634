"""The one validator of link settings: it reads each field's bounds from the proto (``FieldRule`` options on
``LinkSettings`` in protos/diffsem/v1/channel_emulator.proto), so the schema lives in one place (docs/design.md,
"Link schema"). Nothing here names a link field.
"""

from __future__ import annotations

import math

from google.protobuf.descriptor import FieldDescriptor

from protos.diffsem.v1 import channel_emulator_pb2 as pb
from services_common.errors import BadRequest, OutOfRange

FIELDS: tuple[FieldDescriptor, ...] = tuple(f for f in pb.LinkSettings.DESCRIPTOR.fields
                                            if f.GetOptions().HasExtension(pb.rule))


def rule_of(field: FieldDescriptor) -> pb.FieldRule:
    return field.GetOptions().Extensions[pb.rule]


def is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def is_set(s: pb.LinkSettings, field: FieldDescriptor) -> bool:
    """A field given in ``s``: present, or for a repeated field non-empty (an empty list means "keep")."""
    return len(getattr(s, field.name)) > 0 if is_repeated(field) else s.HasField(field.name)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def check_field(field: FieldDescriptor, value: object) -> None:
    """BadRequest (malformed) or OutOfRange naming the field, its value and what is accepted."""
    rule = rule_of(field)
    name = field.name
    if rule.choices:
        if value not in rule.choices:
            raise BadRequest(f"{name}={value!r} is not one of {', '.join(rule.choices)}")
        return
    if field.type == FieldDescriptor.TYPE_BOOL:
        return
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        raise BadRequest(f"{name}={v} must be a finite number")
    if not rule.min <= v <= rule.max:
        lo, hi = f"{rule.min:g}", f"{rule.max:g}"
        text = f"{name}={value}{rule.unit} is out of range [{lo}, {hi}]{rule.unit}"
        if rule.bytes_each:
            text += (f": {value}{rule.unit} would hold about {_size(v * rule.bytes_each)} per link, the limit about "
                     f"{_size(rule.max * rule.bytes_each)} (about {_size(rule.bytes_each)} each)")
        raise OutOfRange(text)


def validate(s: pb.LinkSettings) -> None:
    """Check every set field of ``s`` against its rule (each element of a repeated one)."""
    for field in FIELDS:
        if is_set(s, field):
            for value in getattr(s, field.name) if is_repeated(field) else [getattr(s, field.name)]:
                check_field(field, value)


def initial() -> pb.LinkSettings:
    """A new link's settings: every field whose rule gives an initial value (or choices) set to it."""
    s = pb.LinkSettings()
    for field in FIELDS:
        rule = rule_of(field)
        if rule.choices:
            setattr(s, field.name, rule.choices[0])
        elif is_repeated(field):
            getattr(s, field.name).extend(int(v) for v in rule.initials)
        elif rule.HasField("initial"):
            value = rule.initial
            if field.type == FieldDescriptor.TYPE_BOOL:
                setattr(s, field.name, bool(value))
            elif field.cpp_type in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
                setattr(s, field.name, value)
            else:
                setattr(s, field.name, int(value))
    return s


def merged(current: pb.LinkSettings, update: pb.LinkSettings) -> pb.LinkSettings:
    """``current`` with the set fields of ``update`` (validated) and its ``clear_offset``; raises on a bad field."""
    validate(update)
    out = pb.LinkSettings()
    for field in FIELDS:
        src = update if is_set(update, field) else current
        if is_repeated(field):
            getattr(out, field.name).extend(getattr(src, field.name))
        elif src.HasField(field.name):
            setattr(out, field.name, getattr(src, field.name))
    if update.clear_offset:
        out.ClearField("snr_offset_db")
    return out
