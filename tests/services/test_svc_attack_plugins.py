"""The example attack plugin (examples/custom_attack) is pip-installed, trained with `diffsem attack train`, and
attached to the live stack from a folder holding only what a black-box eavesdropper may read; a plugin that raises
is reported by name, its frames count as failed, and the eavesdropper keeps running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from svc_helpers import ROOT, LiveStack, child_env, eavesdropper_folder

from protos.diffsem.v1 import common_pb2, eavesdropper_pb2_grpc
from services_common.client import grpc_channel

EXAMPLE = ROOT / "examples" / "custom_attack"


def _install_example() -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e",
                           str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "eavesdropper", "--list-attacks"], cwd=ROOT, env=child_env(),
                            capture_output=True, text=True, timeout=120)
    assert "nearest-centroid" in listed.stdout.split() and "always-fails" in listed.stdout.split()


def _train_example(live: LiveStack, eve_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "diffsem.cli", "attack", "train", "--attack", "nearest-centroid",
                           "--checkpoints", str(live.checkpoints), "--out", str(eve_dir), "--n-aux", "2000"],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (eve_dir / "attacks" / "nearest-centroid.safetensors").exists()


def _start(live: LiveStack, eve_dir: Path, name: str, attack: str) -> tuple[subprocess.Popen[bytes], Path]:
    port_file = eve_dir / f"{name}.port.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "eavesdropper", "--port", "0", "--port-file", str(port_file), "--name", name,
         "--attack", attack, "--emulator", live.address("channel_emulator"),
         "--telemetry", live.address("control_panel", "telemetry"), "--checkpoints", str(eve_dir),
         "--credential-file", str(live.credential_file("eavesdropper", name, eve_dir)),
         "--auth-pins-file", str(Path(live.state["auth_dir"]) / "control.pins")],
        cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port_file


def _info(live: LiveStack, port_file: Path) -> Any:
    port = json.loads(port_file.read_text())["grpc"]
    with grpc_channel(f"127.0.0.1:{port}", live.credential("control")) as ch:
        return eavesdropper_pb2_grpc.EavesdropperStub(ch).Info(common_pb2.InfoRequest(), timeout=10)


def test_example_plugin_installed_and_attached_live(live: LiveStack, tmp_path: Path) -> None:
    _install_example()
    eve_dir = eavesdropper_folder(live.checkpoints, tmp_path / "eve")
    assert not (eve_dir / "encoder.safetensors").exists()
    _train_example(live, eve_dir)
    good, good_port = _start(live, eve_dir, "plug", "nearest-centroid")
    bad, bad_port = _start(live, eve_dir, "broken", "always-fails")
    run_id = None
    try:
        with live.http() as c:
            run_id = c.post("/api/runs", json={"n": 1000, "batch_size": 100}).json()["id"]
            deadline = time.monotonic() + 180
            while True:
                ls = c.get("/api/summary").json()["listeners"]
                if ls.get("plug", {}).get("reports", 0) >= 50 and ls.get("broken", {}).get("reports", 0) >= 20:
                    break
                assert good.poll() is None and bad.poll() is None and time.monotonic() < deadline
                if c.get(f"/api/runs/{run_id}").json()["status"] == "done":
                    run_id = c.post("/api/runs", json={"n": 1000, "batch_size": 100}).json()["id"]
                time.sleep(0.2)
            plug, broken = ls["plug"], ls["broken"]
        assert plug["role"] == "eavesdropper" and plug["lost"] == 0
        assert plug["labelled"] > 0 and plug["correct"] / plug["labelled"] > 0.3  # far above chance (0.1)
        assert broken["lost"] == broken["reports"]  # every frame of the failing plugin counted as failed
        info = _info(live, bad_port)
        assert info.mode == "always-fails" and int(info.details["failed[always-fails]"]) >= 20
        assert bad.poll() is None  # still running
        assert _info(live, good_port).mode == "nearest-centroid"
    finally:
        if run_id is not None:  # the shared stack is not left streaming images into later tests
            with live.http() as c:
                c.delete(f"/api/runs/{run_id}")
        for p in (good, bad):
            p.send_signal(signal.SIGTERM)
            p.wait(30)


def test_plugin_error_is_reported_by_name() -> None:
    import pytest
    import torch

    from diffsem.attacks import Attack, AttackError

    class Broken(Attack):
        name = "broken"

        def attack(self, z, abar_eff, header):
            raise RuntimeError("boom")

    from eavesdropper.attacks import ServiceAttack
    from protos.diffsem.v1 import frame_pb2
    from services_common.frames import received_batch
    from services_common.tensors import to_proto

    frames = [frame_pb2.ReceivedFrame(frame=frame_pb2.Frame(message_id=f"m{i}", symbols=to_proto(torch.zeros(256)),
                                                            header=frame_pb2.PublicHeader(a=1.0)), sigma2=0.1)
              for i in range(2)]
    with pytest.raises(AttackError, match="attack 'broken' failed: RuntimeError: boom"):
        ServiceAttack(Broken(None)).attack(received_batch(frames, 256))


def test_an_attack_gets_the_cores_header_per_re_codes_included() -> None:
    """On an ofdm link the frames' header carries per-RE CSI codes: the service hands the attack the core's header of
    them (sigma_self^2 per real dim, the codes), the one ``diffsem attack eval`` gives the same attack, not a mean."""
    import torch

    from diffsem.attacks import Attack
    from diffsem.phy import CsiFeedback
    from diffsem.pipeline import header_from_csi
    from eavesdropper.attacks import ServiceAttack
    from protos.diffsem.v1 import frame_pb2
    from services_common.frames import received_batch
    from services_common.tensors import to_proto

    seen = []

    class Recorder(Attack):
        name = "recorder"

        def attack(self, z, abar_eff, header):
            seen.append(header)
            return torch.zeros(len(z), dtype=torch.long), None

    codes = torch.randint(40, 70, (2, 128), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    want = header_from_csi(300, 0.4, CsiFeedback.per_symbol(codes))
    frames = [frame_pb2.ReceivedFrame(frame=frame_pb2.Frame(
        message_id=f"m{i}", symbols=to_proto(torch.zeros(256)), header=frame_pb2.PublicHeader(
            t_star=300, a=0.4, sigma_self2=float(want.sigma_self2[i].mean()), csi=codes[i].numpy().tobytes())),
        sigma2=0.1, sigma2_re=[0.1] * 128) for i in range(2)]
    ServiceAttack(Recorder(None)).attack(received_batch(frames, 256))
    (header,) = seen
    assert header.sigma_self2.shape == (2, 256) and torch.equal(header.sigma_self2, want.sigma_self2)
    assert torch.equal(header.csi.codes, codes) and (header.t_star, header.a) == (300, 0.4)
