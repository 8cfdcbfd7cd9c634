"""Live equals offline, for every listener, on every PHY (docs/design.md §5): a seeded live run gives, image by image,
the receiver's decisions, each eavesdropper's labels and each judge's labels that the core's frame path gives offline
(:func:`diffsem.decisions.decisions`), for flat AWGN, flat Rayleigh with a new fade every frame and with block
fading, and ofdm TDL-A with LS estimation.

The shared stack's receiver and ``eve`` (feature-classifier, equal SNR) listen, and this module attaches ``inv``
(inversion-decoder, 5 dB worse, judged) for its tests; every link is seeded as ``diffsem eval`` seeds it for the
condition. ``benchmarks/live_stack.py`` runs the same comparison on 1000 images per condition.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from svc_helpers import DEFAULT_CHECKPOINTS, ROOT, LiveStack, child_env, wait_until

from diffsem.decisions import CONDITIONS, FLAT, Eavesdropper, decisions
from diffsem.framepath import LEGIT, TX, eve_role
from diffsem.seeds import derive_seed
from protos.diffsem.v1 import channel_emulator_pb2, channel_emulator_pb2_grpc

SEED, SNR, T_STAR, N, BATCH = 0, 10.0, 300, 100, 50  # two batches: channels and fading blocks run across them
JUDGES = ["cnn"]  # inv's panel: the bundle's judge and the attack's adapted one (the other judges cost the suite time)
EAVESDROPPERS = {"eve": Eavesdropper("feature-classifier", 0.0), "inv": Eavesdropper("inversion-decoder", -5.0)}


@pytest.fixture(scope="module")
def inv(live: LiveStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A second eavesdropper, ``inv``, attached for this module; its process stopped and its link removed after."""
    folder = tmp_path_factory.mktemp("inv")
    proc = subprocess.Popen(
        [sys.executable, "-m", "eavesdropper", "--port", "0", "--port-file", str(folder / "port.json"), "--name", "inv",
         "--attack", "inversion-decoder", "--judges", ",".join(JUDGES), "--emulator", live.address("channel_emulator"),
         "--telemetry", live.address("control_panel", "telemetry"), "--checkpoints", str(live.checkpoints),
         "--credential-file", str(live.credential_file("eavesdropper", "inv", folder)),
         "--auth-pins-file", str(Path(live.state["auth_dir"]) / "control.pins")], cwd=ROOT, env=child_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with live.http() as c:
            wait_until(lambda: proc.poll() is None and c.get("/api/links").json()["links"].get("inv", {}).get("attached"),
                       300, "inv attached", poll_s=0.2)  # its model loads while the machine is busy
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        with live.grpc("channel_emulator") as ch:
            channel_emulator_pb2_grpc.ChannelEmulatorStub(ch).Configure(channel_emulator_pb2.ConfigureRequest(
                links=[channel_emulator_pb2.LinkUpdate(name="inv", remove=True)]), timeout=10)
        with live.http() as c:  # the shared stack as the other modules expect it: flat AWGN
            assert c.put("/api/links", json={"links": {"receiver": FLAT, "eve": FLAT}}).status_code == 200


@pytest.fixture(scope="module")
def bundle(live: LiveStack) -> Any:
    from diffsem.bundle import load_bundle

    return load_bundle(live.checkpoints, device="cpu")


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_a_seeded_live_run_gives_every_listener_the_offline_decisions(live: LiveStack, inv: None, bundle: Any,
                                                                      condition: str) -> None:
    from diffsem.data import load_split

    settings = CONDITIONS[condition]
    seed = {role: derive_seed(SEED, role, SNR, T_STAR) for role in (TX, LEGIT)}
    links = {"receiver": {"snr_db": SNR, "seed": seed[LEGIT], **settings}}
    for name, e in EAVESDROPPERS.items():
        links[name] = {"snr_offset_db": e.offset_db, "seed": derive_seed(SEED, eve_role(e.offset_db), SNR, T_STAR),
                       **settings}
    with live.http() as c:
        r = c.put("/api/links", json={"t_star": T_STAR, "tx_seed": seed[TX], "links": links})
        assert r.status_code == 200, r.text
        run_id = c.post("/api/runs", json={"n": N, "batch_size": BATCH}).json()["id"]
        live.wait_run(run_id)

        def reported() -> dict[str, Any] | None:
            run = c.get(f"/api/runs/{run_id}").json()
            return run if all(run["listeners"][n]["reports"] == N for n in ("receiver", *EAVESDROPPERS)) else None

        run = wait_until(reported, 60, "every listener's reports")
        live_labels = c.get(f"/api/runs/{run_id}/decisions").json()
    assert run["status"] == "done" and run["retransmits"] == 0, run
    images, _ = load_split("mnist", "test")
    offline = decisions(bundle, images[:N], SNR, T_STAR, SEED, settings, EAVESDROPPERS, live.checkpoints, BATCH,
                        judges=JUDGES)
    truth = live_labels["truth"]
    for name in ("receiver", *EAVESDROPPERS):
        same = sum(a == b for a, b in zip(live_labels["listeners"][name], offline.labels[name], strict=True))
        assert same == N, f"{condition}, {name}: {same}/{N} decisions agree"
    judged = {judge: sum(a == t for a, t in zip(labels, truth, strict=True)) / N
              for judge, labels in offline.judged["inv"].items()}
    assert run["listeners"]["inv"]["judges"] == pytest.approx(judged, abs=1e-12), (run["listeners"]["inv"], judged)
    assert set(judged) == {"cnn", "adapted"}  # every judge agrees, not only the first
    assert run["accuracy"]["receiver"] == sum(a == t for a, t in zip(offline.labels["receiver"], truth, strict=True)) / N
    if condition == "flat-awgn" and live.checkpoints.resolve() == DEFAULT_CHECKPOINTS.resolve():
        assert run["accuracy"]["receiver"] > 0.90, run["accuracy"]  # the committed checkpoints at 10 dB, t* = 300
