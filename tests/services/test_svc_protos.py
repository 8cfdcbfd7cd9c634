"""The committed generated code is what ``protos/generate.py`` produces from the .proto files with the locked
grpcio-tools, and pyproject.toml's ranges admit no grpcio or protobuf too old to run it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from svc_helpers import ROOT

from protos import generate as gen
from protos.generate import generate


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    committed_dir = ROOT / "protos" / "diffsem" / "v1"
    committed = sorted(p.name for p in committed_dir.iterdir() if p.name.endswith(("_pb2.py", "_pb2_grpc.py")))
    assert [p.name for p in fresh] == committed, "generated files differ in name: run python protos/generate.py"
    for p in fresh:
        assert p.read_bytes() == (committed_dir / p.name).read_bytes(), (
            f"{p.name} is stale: run `python protos/generate.py` and commit the result")


def test_generate_refuses_a_grpcio_tools_other_than_the_locked_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "dev.txt"
    lock.write_text("grpcio-tools==1.0.0 \\\n    --hash=sha256:00\n")
    monkeypatch.setattr(gen, "LOCK", lock)
    with pytest.raises(RuntimeError, match=r"grpcio-tools \S+ is not the one .* locks \(1\.0\.0\): run scripts/setup"):
        generate(tmp_path)
    assert not (tmp_path / "protos").exists()


def test_pyproject_admits_no_grpcio_or_protobuf_older_than_the_generated_code_needs() -> None:
    """The generated modules refuse to import under an older grpcio (GRPC_GENERATED_VERSION) or protobuf (gencode)."""
    code = ROOT / "protos" / "diffsem" / "v1"
    needs = {"grpcio": re.search(r"GRPC_GENERATED_VERSION = '(\S+)'", (code / "common_pb2_grpc.py").read_text())[1],
             "protobuf": re.search(r"Protobuf Python Version: (\S+)", (code / "common_pb2.py").read_text())[1]}
    ranges = {r.name: r.specifier for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())
                                                ["project"]["dependencies"])}
    for name, version in needs.items():
        floors = [Version(s.version) for s in ranges[name] if s.operator in (">=", "==", "~=")]
        assert floors and max(floors) >= Version(version), f"pyproject.toml: {name}{ranges[name]}; the code needs >={version}"


def test_the_wire_names_every_core_link_setting_and_nothing_else() -> None:
    """One direction: the core's LinkConfig declares the link settings; LinkSettings carries exactly those fields
    (plus the trace and the clear switches), with no bounds of its own to drift from the core's."""
    from channel_emulator.schema import FIELDS
    from diffsem.config import LinkConfig
    from protos.diffsem.v1 import channel_emulator_pb2 as pb

    assert {f.name for f in FIELDS} == set(LinkConfig.model_fields)
    rest = {f.name for f in pb.LinkSettings.DESCRIPTOR.fields} - set(LinkConfig.model_fields)
    assert rest == {"trace", "clear_trace", "clear_offset", "antennas"}
    assert not any(f.GetOptions().ListFields() for f in pb.LinkSettings.DESCRIPTOR.fields)  # no rules on the wire
    # the antennas are the core's too: AntennaConfig's counts and NullSpaceConfig's split, by the same names
    from diffsem.phy.antennas import AntennaConfig
    from diffsem.phy.nullspace import NullSpaceConfig

    names = {f.name for f in pb.AntennaSettings.DESCRIPTOR.fields}
    assert names == {"n_tx", "n_rx", "estimator", "feedback_delay", "speed_kmh", "correlation", "channel_model"} | \
        set(NullSpaceConfig.model_fields) and names <= set(AntennaConfig.model_fields) | set(NullSpaceConfig.model_fields)


def test_the_link_settings_travel_as_json_and_building_the_core_object_validates_them() -> None:
    """The panel's JSON form of LinkSettings (protobuf json_format) meets the emulator's one validation: the core's."""
    import pytest
    from google.protobuf import json_format

    from channel_emulator.schema import config, initial, merged
    from diffsem.errors import ConfigError, OutOfRangeError
    from protos.diffsem.v1 import channel_emulator_pb2 as pb

    ok = json_format.Parse('{"snr_db": 3, "fading": "rician", "queue_size": 64}', pb.LinkSettings())
    assert ok.HasField("snr_db") and not ok.HasField("rician_k")  # unset fields keep the link's value
    cfg = config(merged(initial(), ok))
    assert (cfg.snr_db, cfg.fading, cfg.queue_size, cfg.rician_k) == (3.0, "rician", 64, 4.0)
    with pytest.raises(OutOfRangeError, match=r"queue_size=100000 frames is out of range \[1, 8192\] frames"):
        config(json_format.Parse('{"queue_size": 100000}', pb.LinkSettings()))
    with pytest.raises(ConfigError, match="fading='awgn' is not one of none, rayleigh, rician"):
        config(json_format.Parse('{"fading": "awgn"}', pb.LinkSettings()))
