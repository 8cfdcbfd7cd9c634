"""Keyed self-noise on the live stack (``launcher --self-noise keyed``).

The launcher hands the key to the transmitter and the receiver only. The receiver removes the keyed noise and
decodes; an eavesdropper at the same SNR without the key is left with the self-noise. A receiver with a wrong or
missing key loses every keyed frame with the reason, which the panel shows, instead of guessing.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from svc_helpers import ROOT, LiveStack, child_env, start_stack, stop_stack, wait_until

from diffsem.defaults import KEY_ENV
from protos.diffsem.v1 import common_pb2, frame_pb2, receiver_pb2, receiver_pb2_grpc, transmitter_pb2_grpc
from services_common.client import grpc_channel

T_STAR, SNR_DB = 700, 20.0


@pytest.fixture(scope="module")
def keyed(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("keyed")
    key_file = d / "self_noise.key"
    key_file.write_text(secrets.token_hex(32))
    stack = start_stack(checkpoints, d, "--self-noise", "keyed", "--key-file", str(key_file), "--t-star",
                        str(T_STAR), "--snr-db", str(SNR_DB), "-e", "eve:feature-classifier:0",
                        "--receiver-threads", "1", "--no-restart")
    yield stack
    stop_stack(stack)


def run(stack: LiveStack, n: int, start: int = 0) -> dict:
    with stack.http() as c:
        run_id = c.post("/api/runs", json={"n": n, "start": start, "batch_size": 50}).json()["id"]
    return stack.wait_run(run_id)


def test_keyed_receiver_decodes_and_eavesdropper_without_key_does_not(keyed: LiveStack) -> None:
    with keyed.grpc("transmitter") as ch:
        state = transmitter_pb2_grpc.TransmitterStub(ch).GetState(common_pb2.InfoRequest(), timeout=10)
    assert state.self_noise == "keyed" and len(state.key_check) == 16 and state.t_star == T_STAR
    result = run(keyed, 300)
    assert result["status"] == "done", result
    acc = result["accuracy"]
    assert acc["receiver"] >= 0.9, acc  # the key holder sees only the channel noise at 20 dB
    assert acc["eve"] <= 0.6, acc      # same SNR, no key: the self-noise of t* = 700 stays
    environ = Path(f"/proc/{keyed.pid('eve')}/environ").read_bytes()
    assert KEY_ENV.encode() not in environ
    assert "--key-file" not in Path(f"/proc/{keyed.pid('eve')}/cmdline").read_bytes().decode()


def _legit_attached(stack: LiveStack) -> bool:
    with stack.http() as c:
        return bool(c.get("/api/summary").json().get("links", {}).get("receiver", {}).get("attached"))


def _wait_detached(stack: LiveStack) -> None:
    wait_until(lambda: not _legit_attached(stack), 30, "the stopped receiver to detach", poll_s=0.2)


def _receiver(stack: LiveStack, tmp_path: Path, key_args: list[str]) -> tuple[subprocess.Popen, str]:
    """Our own receiver process on the legitimate link; returns once it serves and the emulator sees it attached."""
    port_file = tmp_path / f"rx-{len(key_args)}.json"
    env = {k: v for k, v in child_env().items() if k != KEY_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "receiver", "--port", "0", "--port-file", str(port_file),
         "--emulator", stack.address("channel_emulator"), "--telemetry", stack.address("control_panel", "telemetry"),
         "--checkpoints", str(stack.checkpoints), "--threads", "1", *key_args,
         "--credential-file", str(stack.credential_file("receiver", "receiver", tmp_path)),
         "--auth-key-file", str(Path(stack.state["auth_dir"]) / "authority.key")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("our receiver did not start and attach within 120 s")
        if port_file.exists() and _legit_attached(stack):
            addr = f"127.0.0.1:{json.loads(port_file.read_text())['grpc']}"
            with grpc_channel(addr, stack.credential("control")) as ch:
                try:
                    receiver_pb2_grpc.ReceiverStub(ch).Info(common_pb2.InfoRequest(), timeout=5)
                    return proc, addr
                except grpc.RpcError:
                    pass
        time.sleep(0.3)


def keyed_frame(stack: LiveStack) -> frame_pb2.ReceivedFrame:
    """One keyed frame made with the core, as the transmitter makes it, received without channel noise."""
    import torch

    from diffsem.bundle import load_bundle
    from diffsem.keyed import NonceSource
    from diffsem.pipeline import keyed_self_noise_frame
    from services_common.frames import header_to_proto
    from services_common.tensors import to_proto

    bundle = load_bundle(stack.checkpoints, device="cpu")
    with torch.no_grad():
        s = bundle.encoder(torch.zeros(1, 1, 28, 28))
    x, header, info = keyed_self_noise_frame(s, T_STAR, bundle.abar, 0.01, secrets.token_bytes(32), NonceSource())
    frame = frame_pb2.Frame(message_id="k1", seq=0, symbols=to_proto(x[0]),
                            header=header_to_proto(header, 0, bundle.model_id, time.time(), info))
    return frame_pb2.ReceivedFrame(frame=frame, link="receiver", role=common_pb2.ROLE_LEGITIMATE, sigma2=0.01)


def test_wrong_or_missing_key_loses_frames_with_the_reason(keyed: LiveStack, tmp_path: Path) -> None:
    os.kill(keyed.pid("receiver"), signal.SIGTERM)  # the launcher runs with --no-restart: we replace it
    _wait_detached(keyed)
    wrong = tmp_path / "wrong.key"
    wrong.write_text(secrets.token_hex(32))
    for i, (key_args, reason) in enumerate(((["--key-file", str(wrong)], "different key"), ([], "has no key"))):
        proc, addr = _receiver(keyed, tmp_path, key_args)
        try:
            with grpc_channel(addr, keyed.credential("control")) as ch, pytest.raises(grpc.RpcError) as err:
                receiver_pb2_grpc.ReceiverStub(ch).Decode(receiver_pb2.DecodeRequest(frames=[keyed_frame(keyed)]),
                                                          timeout=30)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason in err.value.details()
            result = run(keyed, 40, start=1000 + 100 * i)
            legit = result["listeners"]["receiver"]
            assert legit["lost"] == legit["reports"] == 40 and result["accuracy"]["receiver"] == 0.0, legit
            assert reason in legit["last_error"], legit
            assert result["listeners"]["eve"]["lost"] == 0  # other listeners are untouched
            with keyed.http() as c:
                assert reason in c.get("/api/summary").json()["listeners"]["receiver"]["last_error"]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            _wait_detached(keyed)
