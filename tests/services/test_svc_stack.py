"""End to end through the launcher: real processes on loopback, ephemeral ports, no mocks."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from google.protobuf import message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from PIL import Image
from svc_helpers import (
    ROOT,
    LiveStack,
    child_env,
    huge_png_header,
    png_bytes,
    wait_until,
)

from diffsem.data import load_split
from launcher.__main__ import main as launcher_main
from protos.diffsem.v1 import common_pb2, eavesdropper_pb2_grpc, receiver_pb2_grpc, transmitter_pb2_grpc
from services_common import auth
from services_common.client import grpc_channel

SNR, T_STAR = 10.0, 300


# ---- helpers -------------------------------------------------------------------------------------------
def reflect(address: str) -> tuple[list[str], DescriptorPool, grpc.Channel]:
    """Services listed by server reflection, and a descriptor pool fed by it (no generated stubs)."""
    ch = grpc.insecure_channel(address)
    db = ProtoReflectionDescriptorDatabase(ch)
    return list(db.get_services()), DescriptorPool(db), ch


def dynamic_call(ch: grpc.Channel, pool: DescriptorPool, full_method: str, credential: str | None = None,
                 **fields: Any) -> Any:
    """Call ``package.Service/Method`` with request and response classes built from reflected descriptors."""
    service, method = full_method.split("/")
    md = pool.FindServiceByName(service).FindMethodByName(method)
    req_cls = message_factory.GetMessageClass(md.input_type)
    resp_cls = message_factory.GetMessageClass(md.output_type)
    call = ch.unary_unary(f"/{full_method}", request_serializer=req_cls.SerializeToString,
                          response_deserializer=resp_cls.FromString)
    return call(req_cls(**fields), timeout=5, metadata=auth.call_metadata(credential))


def emulator_state(live: LiveStack) -> dict[str, Any]:
    with live.http() as c:
        return c.get("/api/summary").json()["links"]


# ---- health and reflection -----------------------------------------------------------------------------
@pytest.mark.parametrize("service,key,name", [
    ("transmitter", "grpc", "diffsem.v1.Transmitter"), ("channel_emulator", "grpc", "diffsem.v1.ChannelEmulator"),
    ("receiver", "grpc", "diffsem.v1.Receiver"), ("eve", "grpc", "diffsem.v1.Eavesdropper"),
    ("control_panel", "telemetry", "diffsem.v1.Telemetry")])
def test_health_and_reflection_without_our_stubs(live: LiveStack, service: str, key: str, name: str) -> None:
    services, pool, ch = reflect(live.address(service, key))
    with ch:
        assert {name, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
        for target in ("", name):
            resp = dynamic_call(ch, pool, "grpc.health.v1.Health/Check", service=target)
            serving = resp.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_name["SERVING"].number
            assert resp.status == serving
        if service in ("receiver", "eve"):
            info = dynamic_call(ch, pool, f"{name}/Info", live.credential("control"))
            assert info.k == 256 and info.model_id


# ---- uploads -------------------------------------------------------------------------------------------
def test_upload_png_of_an_mnist_image_gets_a_decision(live: LiveStack) -> None:
    images, labels = load_split("mnist", "test")
    img = (images[0, 0].numpy() * 255).round().astype(np.uint8)
    with live.http() as c:
        r = c.post("/api/transmit", files={"file": ("digit.png", png_bytes(img), "image/png")},
                   data={"label": str(int(labels[0]))})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["label"] == int(labels[0])
    assert body["receiver"]["label"] in range(10) and body["receiver"]["correct"] in (True, False)
    assert body["eavesdroppers"]["eve"]["label"] in range(10)
    assert body["missing"] == [] and body["preprocessing"] == {"format": "png", "original_size": [28, 28],
                                                               "inverted": False, "resized": False}
    assert body["header"]["t_star"] == T_STAR and 0 < body["header"]["a"] < 1


def test_upload_npy_and_jpeg_without_label(live: LiveStack) -> None:
    images, _ = load_split("mnist", "test")
    img = (images[1, 0].numpy() * 255).round().astype(np.uint8)
    npy = io.BytesIO()
    np.save(npy, img)
    jpg = io.BytesIO()
    Image.fromarray(255 - np.kron(img, np.ones((4, 4), np.uint8))).convert("RGB").save(jpg, format="JPEG")
    with live.http() as c:
        for name, data in (("x.npy", npy.getvalue()), ("x.jpg", jpg.getvalue())):
            r = c.post("/api/transmit", files={"file": (name, data, "application/octet-stream")})
            assert r.status_code == 200, r.text
            assert r.json()["label"] is None and r.json()["receiver"]["correct"] is None
        assert r.json()["preprocessing"]["inverted"] and r.json()["preprocessing"]["resized"]


def _png() -> bytes:
    return png_bytes(np.zeros((28, 28), np.uint8))


@pytest.mark.parametrize("case,payload,label,status,words", [
    ("non-image", b"this is plain text, not an image", None, 400, "not a PNG, JPEG or .npy"),
    ("truncated PNG", None, None, 400, "truncated"),
    ("empty file", b"", None, 400, "empty file"),
    ("over the size limit", b"\x89PNG\r\n\x1a\n" + b"\0" * (6 * 1024 * 1024), None, 413, "over the limit"),
    ("20000x20000 pixels", None, None, 413, "20000x20000"),
    ("label 12", None, "12", 422, "0 to 9"),
    ("label -1", None, "-1", 422, "0 to 9"),
    ("label not a number", None, "seven", 422, "0 to 9"),
])
def test_bad_uploads_get_a_clear_4xx(live: LiveStack, case: str, payload: bytes | None, label: str | None,
                                     status: int, words: str) -> None:
    if payload is None:
        payload = {"truncated PNG": _png()[:-20], "20000x20000 pixels": huge_png_header()}.get(case, _png())
    with live.http() as c:
        before = c.get("/api/summary").json()
        r = c.post("/api/transmit", files={"file": ("f.png", payload, "image/png")},
                   data={} if label is None else {"label": label})
        assert r.status_code == status, r.text
        assert words in r.json()["detail"]
        after = c.get("/api/summary").json()
    assert after["messages"] == before["messages"]  # nothing was sent or counted


# ---- link settings: tests/services/test_svc_panel_links.py -------------------------------------------


# ---- names and frames ----------------------------------------------------------------------------------
def test_unknown_attack_is_refused_with_the_known_names(live: LiveStack, capsys: pytest.CaptureFixture[str]) -> None:
    from protos.diffsem.v1 import eavesdropper_pb2, eavesdropper_pb2_grpc

    with live.grpc("eve") as ch:
        with pytest.raises(grpc.RpcError) as err:
            eavesdropper_pb2_grpc.EavesdropperStub(ch).Attack(eavesdropper_pb2.AttackRequest(attack="nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown attack 'nope'" in err.value.details() and "feature-classifier" in err.value.details()
    assert launcher_main(["-e", "x:nope", "--ports", "0"]) == 2  # refused before anything starts: in this process
    err = capsys.readouterr().err
    assert "unknown attack 'nope'" in err and "feature-classifier" in err
    done = subprocess.run([sys.executable, "-m", "eavesdropper", "--attack", "nope"], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown attack 'nope'" in done.stderr and "feature-classifier" in done.stderr


def test_frames_of_wrong_shape_or_dtype_are_invalid_argument(live: LiveStack) -> None:
    from protos.diffsem.v1 import (
        channel_emulator_pb2,
        channel_emulator_pb2_grpc,
        frame_pb2,
        receiver_pb2,
        receiver_pb2_grpc,
        transmitter_pb2,
        transmitter_pb2_grpc,
    )
    from services_common.tensors import to_proto

    def header() -> frame_pb2.PublicHeader:
        return frame_pb2.PublicHeader(a=0.5, sigma_self2=0.3)

    bad_rx = [
        (torch.zeros(100), "shape (100,), expected (256,)"),
        (torch.zeros(256, dtype=torch.float64), "dtype float64, expected float32"),
        (torch.zeros(2, 128), "shape (2, 128)"),
    ]
    with live.grpc("receiver") as ch:
        stub = receiver_pb2_grpc.ReceiverStub(ch)
        for x, words in bad_rx:
            rf = frame_pb2.ReceivedFrame(frame=frame_pb2.Frame(message_id="m", symbols=to_proto(x), header=header()))
            with pytest.raises(grpc.RpcError) as err:
                stub.Decode(receiver_pb2.DecodeRequest(frames=[rf]), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
        ok = frame_pb2.ReceivedFrame(frame=frame_pb2.Frame(message_id="m", symbols=to_proto(torch.zeros(256)),
                                                           header=header()), sigma2=0.1)
        with pytest.raises(grpc.RpcError) as err:
            stub.Decode(receiver_pb2.DecodeRequest(frames=[ok], mode="magic"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "selfref" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Decode(receiver_pb2.DecodeRequest(frames=[ok], classifier="oracle"), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "channel" in err.value.details()
        for clf in ("matched", "channel"):
            decided = stub.Decode(receiver_pb2.DecodeRequest(frames=[ok], mode="direct", classifier=clf), timeout=5)
            assert decided.decisions[0].label in range(10) and decided.decisions[0].classifier == clf
    with live.grpc("channel_emulator", "transmitter") as ch:
        stub = channel_emulator_pb2_grpc.ChannelEmulatorStub(ch)
        for x, words in ((torch.zeros(256, dtype=torch.float64), "float64"), (torch.zeros(7), "even"),
                         (torch.full((256,), float("nan")), "NaN")):
            with pytest.raises(grpc.RpcError) as err:
                stub.Send(channel_emulator_pb2.SendRequest(frames=[frame_pb2.Frame(symbols=to_proto(x))]), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
    with live.grpc("transmitter") as ch:
        stub = transmitter_pb2_grpc.TransmitterStub(ch)
        for x, words in ((torch.zeros(2, 28), "expected (B, 1, 28, 28)"), (torch.full((28, 28), 2.0), "[0, 1]"),
                         (torch.zeros(28, 28, dtype=torch.int64), "int64")):
            with pytest.raises(grpc.RpcError) as err:
                stub.Transmit(transmitter_pb2.TransmitRequest(images=to_proto(x)), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.Configure(transmitter_pb2.TransmitterConfig(t_star=5000), timeout=5)
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE and "t_star=5000" in err.value.details()


def test_transmit_stream_answers_each_batch_in_order(live: LiveStack) -> None:
    from protos.diffsem.v1 import transmitter_pb2, transmitter_pb2_grpc
    from services_common.tensors import to_proto

    images, _ = load_split("mnist", "test")
    reqs = [transmitter_pb2.TransmitRequest(images=to_proto(images[i:i + 3]), message_ids=[f"s{i}-{j}" for j in range(3)])
            for i in (0, 3)]
    with live.grpc("transmitter") as ch:
        replies = list(transmitter_pb2_grpc.TransmitterStub(ch).TransmitStream(iter(reqs), timeout=20))
    assert [list(r.message_ids) for r in replies] == [list(r.message_ids) for r in reqs]
    seqs = [s for r in replies for s in r.seqs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    with live.http() as c:  # ids the panel never registered: reported, never counted
        wait_until(lambda: c.get("/api/summary").json()["unmatched_reports"] >= 6, 20, "6 unmatched reports")


# ---- test-set runs: accuracy and the same decisions as offline are test_svc_agreement.py's ----------------


# ---- disconnects, attach/detach, restarts --------------------------------------------------------------
def test_listener_disconnect_mid_stream_is_removed_and_nobody_notices(live: LiveStack) -> None:
    from protos.diffsem.v1 import channel_emulator_pb2, channel_emulator_pb2_grpc, common_pb2

    probe = grpc_channel(live.address("channel_emulator"), live.credential("eavesdropper", "probe"))
    with probe as ch, live.http() as c:
        stub = channel_emulator_pb2_grpc.ChannelEmulatorStub(ch)
        stream = stub.Listen(channel_emulator_pb2.ListenRequest(role=common_pb2.ROLE_EAVESDROPPER, name="probe"),
                             timeout=60)
        wait_until(lambda: emulator_state(live).get("probe", {}).get("attached"), 20, "probe attached")
        # the probe never reports: the run stops waiting for it after 2 s of silence, not the default 10 s
        run_id = c.post("/api/runs", json={"n": 300, "batch_size": 50, "report_deadline_s": 2}).json()["id"]
        first = next(stream)
        assert first.link == "probe" and first.frame.message_id.startswith(run_id)
        stream.cancel()  # disconnect mid-stream
        run = live.wait_run(run_id)
        links = emulator_state(live)
    assert run["status"] == "done" and run["decided"] == 300 and run["retransmits"] == 0
    assert run["listeners"]["eve"]["reports"] == 300
    assert not links["probe"]["attached"]
    assert links["receiver"]["dropped_queue"] == 0 and links["eve"]["dropped_queue"] == 0


RUN_N = 1000


def test_attach_and_detach_an_eavesdropper_during_a_run(live: LiveStack, tmp_path: Any) -> None:
    """Runs of RUN_N images go on back to back until eve2 has attached; the last one finishes after it has left."""
    port_file = tmp_path / "eve2.json"
    with live.http() as c:
        run_id = c.post("/api/runs", json={"n": RUN_N, "batch_size": 100}).json()["id"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "eavesdropper", "--port", "0", "--port-file", str(port_file), "--name", "eve2",
             "--emulator", live.address("channel_emulator"), "--telemetry", live.address("control_panel", "telemetry"),
             "--checkpoints", str(live.checkpoints), "--snr-offset-db", "-5",
             "--credential-file", str(live.credential_file("eavesdropper", "eve2", tmp_path)),
             "--auth-pins-file", str(Path(live.state["auth_dir"]) / "control.pins")], cwd=ROOT, env=child_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while (c.get("/api/summary").json()["listeners"].get("eve2", {}).get("reports", 0) < 20):
                assert proc.poll() is None and time.monotonic() < deadline
                if c.get(f"/api/runs/{run_id}").json()["status"] == "done":  # keep traffic flowing until attached
                    run_id = c.post("/api/runs", json={"n": RUN_N, "batch_size": 100}).json()["id"]
                time.sleep(0.2)
            assert emulator_state(live)["eve2"]["attached"]
            assert emulator_state(live)["eve2"]["snr_db"] == SNR - 5
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        detached_at = c.get("/api/summary").json()["listeners"]["eve2"]["reports"]
        run = live.wait_run(run_id)
        wait_until(lambda: c.get(f"/api/runs/{run_id}").json()["listeners"]["eve"]["reports"] >= RUN_N, 60,
                   "eve's reports of the whole run")  # the other eavesdropper may lag behind the receiver a little
        summary = c.get("/api/summary").json()
    assert not summary["links"]["eve2"]["attached"]
    assert run["status"] == "done" and run["decided"] == RUN_N and run["gave_up"] == 0
    assert summary["links"]["eve"]["dropped_queue"] == 0  # the other eavesdropper never noticed
    assert summary["listeners"]["eve2"]["reports"] == detached_at
    assert summary["links"]["receiver"]["dropped_queue"] == 0


def test_receiver_killed_mid_run_restarts_reattaches_and_the_run_completes(live: LiveStack) -> None:
    n = 800
    old_pid = live.pid("receiver")
    with live.http() as c:
        # retries outlast a restart on a loaded machine (model loading can take 20 s when the cores are shared)
        run_id = c.post("/api/runs", json={"n": n, "batch_size": 50, "retry_after_s": 3, "max_retries": 20}).json()["id"]
        wait_until(lambda: c.get(f"/api/runs/{run_id}").json()["decided"] >= 100, 120, "100 decisions")
        os.kill(old_pid, signal.SIGKILL)
        run = live.wait_run(run_id)
        summary = c.get("/api/summary").json()
    assert live.pid("receiver") != old_pid and live.state["services"]["receiver"]["restarts"] >= 1
    assert run["status"] == "done" and run["decided"] == n and run["gave_up"] == 0
    assert run["retransmits"] > 0
    assert run["listeners"]["receiver"]["reports"] == n  # each image counted once, retransmissions or not
    assert summary["links"]["receiver"]["attached"]


def test_reports_are_joined_once_and_reconstructions_are_served(live: LiveStack) -> None:
    from protos.diffsem.v1 import common_pb2, telemetry_pb2, telemetry_pb2_grpc
    from services_common.tensors import to_proto

    images, labels = load_split("mnist", "test")
    img = (images[2, 0].numpy() * 255).round().astype(np.uint8)
    with live.http() as c:
        sent = c.post("/api/transmit", files={"file": ("d.png", png_bytes(img), "image/png")},
                      data={"label": str(int(labels[2]))}).json()
        before = c.get("/api/summary").json()
        report = telemetry_pb2.Report(message_id=sent["message_id"], listener="inverter", has_label=True,
                                      label=int(labels[2]), role=common_pb2.ROLE_EAVESDROPPER, method="test-attack",
                                      reconstruction=to_proto(images[2]))
        with live.grpc("control_panel", "eavesdropper", "telemetry", name="inverter") as ch:
            stub = telemetry_pb2_grpc.TelemetryStub(ch)
            first = stub.Report(telemetry_pb2.ReportRequest(reports=[report]), timeout=5)
            again = stub.Report(telemetry_pb2.ReportRequest(reports=[report, report]), timeout=5)
            unknown = stub.Report(telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(
                message_id="never-sent", listener="inverter", role=common_pb2.ROLE_EAVESDROPPER)]), timeout=5)
            with pytest.raises(grpc.RpcError) as err:
                stub.Report(telemetry_pb2.ReportRequest(reports=[telemetry_pb2.Report(listener="x")]), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (first.accepted, again.duplicates, unknown.unmatched) == (1, 2, 1)
        after = c.get("/api/summary").json()
        msg = c.get(f"/api/messages/{sent['message_id']}").json()
        png = c.get(msg["eavesdroppers"]["inverter"]["reconstruction_url"])
    assert after["listeners"]["inverter"]["reports"] == 1 and after["listeners"]["inverter"]["correct"] == 1
    assert after["duplicate_reports"] == before["duplicate_reports"] + 2
    assert after["listeners"]["receiver"] == before["listeners"]["receiver"]
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png.content))), img)


def test_summary_and_metrics(live: LiveStack) -> None:
    with live.http() as c:
        summary = c.get("/api/summary").json()
        metrics = c.get("/metrics").text
        assert c.get("/api/runs/nope").status_code == 404
        assert c.get("/openapi.json").json()["paths"]["/api/transmit"]["post"]
        assert "DiffSem" in c.get("/").text
    assert summary["listeners"]["receiver"]["role"] == "legitimate"
    assert summary["listeners"]["eve"]["role"] == "eavesdropper"
    assert 'diffsem_reports_total{listener="receiver",role="legitimate"}' in metrics
    assert 'diffsem_link_dropped_queue_total{link="receiver"} 0.0' in metrics
    assert "diffsem_transmit_seconds_bucket" in metrics


# ---- authenticated roles, from the attacker's position -------------------------------------------------
CONTROL_ONLY = {
    "transmitter": lambda ch: transmitter_pb2_grpc.TransmitterStub(ch).GetState(common_pb2.InfoRequest(), timeout=5),
    "receiver": lambda ch: receiver_pb2_grpc.ReceiverStub(ch).Info(common_pb2.InfoRequest(), timeout=5),
    "eve": lambda ch: eavesdropper_pb2_grpc.EavesdropperStub(ch).Info(common_pb2.InfoRequest(), timeout=5),
}


@pytest.mark.parametrize("service", sorted(CONTROL_ONLY))
def test_only_the_control_credential_may_call_a_service(live: LiveStack, service: str) -> None:
    call = CONTROL_ONLY[service]
    forged = auth.issue(os.urandom(auth.KEY_BYTES), auth.CONTROL, auth.CONTROL)
    # An eavesdropper holds only the control credential's fingerprint, not the key: any other credential, valid
    # elsewhere or not, is one it cannot verify (UNAUTHENTICATED); a key holder knows it is another role's.
    other = grpc.StatusCode.UNAUTHENTICATED if service == "eve" else grpc.StatusCode.PERMISSION_DENIED
    cases = [(live.credential(auth.EAVESDROPPER, "eve"), other), (live.credential(auth.RECEIVER), other),
             (live.credential(auth.TRANSMITTER), other),
             (forged, grpc.StatusCode.UNAUTHENTICATED), (None, grpc.StatusCode.UNAUTHENTICATED)]
    for credential, code in cases:
        with grpc_channel(live.address(service), credential) as ch, pytest.raises(grpc.RpcError) as err:
            call(ch)
        assert err.value.code() == code, (credential and credential.split(".")[1], err.value.details())
    with live.grpc(service) as ch:
        assert call(ch)  # the panel's own credential


def test_nobody_but_the_receiver_listens_as_the_legitimate_link(live: LiveStack) -> None:
    from protos.diffsem.v1 import channel_emulator_pb2, channel_emulator_pb2_grpc, common_pb2

    req = channel_emulator_pb2.ListenRequest(role=common_pb2.ROLE_LEGITIMATE, name="receiver")
    for credential, code in ((live.credential(auth.EAVESDROPPER, "eve"), grpc.StatusCode.PERMISSION_DENIED),
                             (live.credential(auth.CONTROL), grpc.StatusCode.PERMISSION_DENIED),
                             (auth.issue(os.urandom(auth.KEY_BYTES), auth.RECEIVER, "receiver"),
                              grpc.StatusCode.UNAUTHENTICATED), (None, grpc.StatusCode.UNAUTHENTICATED)):
        with grpc_channel(live.address("channel_emulator"), credential) as ch, pytest.raises(grpc.RpcError) as err:
            next(channel_emulator_pb2_grpc.ChannelEmulatorStub(ch).Listen(req, timeout=5))
        assert err.value.code() == code
    assert emulator_state(live)["receiver"]["attached"]  # the real receiver kept its link


def test_an_eavesdropper_process_holds_no_other_roles_credential(live: LiveStack) -> None:
    pid = live.pid("eve")
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode()
    auth_dir = Path(live.state["auth_dir"])
    others = [(auth_dir / f"{n}.credential").read_text().strip() for n in ("control", "transmitter", "receiver")]
    key = (auth_dir / "authority.key").read_text().strip()
    given = [Path(a) for a in argv if a.startswith("/") and Path(a).is_file()]
    assert auth_dir / "eve.credential" in given and auth_dir / "control.pins" in given
    assert auth_dir / "authority.key" not in given and "DIFFSEM_AUTH_KEY_FILE" not in environ
    for secret in (*others, key):
        assert secret not in " ".join(argv) and secret not in environ
        for path in given:
            assert secret not in path.read_text(errors="replace"), path
