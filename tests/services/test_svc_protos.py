"""The committed generated code is what ``protos/generate.py`` produces from the .proto files."""

from __future__ import annotations

from pathlib import Path

from svc_helpers import ROOT

from protos.generate import generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    committed_dir = ROOT / "protos" / "diffsem" / "v1"
    committed = sorted(p.name for p in committed_dir.iterdir() if p.name.endswith(("_pb2.py", "_pb2_grpc.py")))
    assert [p.name for p in fresh] == committed, "generated files differ in name: run python protos/generate.py"
    for p in fresh:
        assert p.read_bytes() == (committed_dir / p.name).read_bytes(), (
            f"{p.name} is stale: run `python protos/generate.py` and commit the result")


def test_the_link_schema_travels_as_json_and_its_rules_are_enforced_from_the_proto() -> None:
    """The panel's JSON form of LinkSettings (protobuf json_format) meets the emulator's one validator."""
    import pytest
    from google.protobuf import json_format

    from channel_emulator.schema import validate
    from protos.diffsem.v1 import channel_emulator_pb2 as pb
    from services_common.errors import BadRequest, OutOfRange

    ok = json_format.Parse('{"snr_db": 3, "fading": "rician", "queue_size": 64}', pb.LinkSettings())
    validate(ok)
    assert ok.HasField("snr_db") and not ok.HasField("rician_k")  # unset fields keep the link's value
    with pytest.raises(OutOfRange, match="queue_size=100000 frames is out of range"):
        validate(json_format.Parse('{"queue_size": 100000}', pb.LinkSettings()))
    with pytest.raises(BadRequest, match="fading='awgn' is not one of none, rayleigh, rician"):
        validate(json_format.Parse('{"fading": "awgn"}', pb.LinkSettings()))
