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


def test_imports_use_the_protos_package() -> None:
    from protos.diffsem.v1 import frame_pb2, transmitter_pb2_grpc

    assert frame_pb2.DESCRIPTOR.package == "diffsem.v1"
    assert transmitter_pb2_grpc.TransmitterStub
