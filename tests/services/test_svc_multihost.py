"""The live stack across hosts: each service in its own network namespace with its own address, on a private LAN
(tests/services/netns.py), bound to its host's address, never to loopback. A link is cut by setting the host's
switch port down, as a pulled cable: no RST reaches anyone, only the keepalive notices (services_common/server.py,
$DIFFSEM_GRPC_KEEPALIVE_S, 2 s here).

Hosts: emulator, transmitter, panel, receiver, eve1, eve2, and an operator host from which the test calls the
panel's HTTP API (the machine's own namespace is not on the LAN). The tests run in order on one stack.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import netns
import pytest
from svc_helpers import wait_until

from channel_emulator.settings import SPEC as EMULATOR
from eavesdropper.settings import SPEC as EAVESDROPPER
from launcher.stack import Service
from receiver.settings import SPEC as RECEIVER
from services_common import auth
from transmitter.settings import SPEC as TRANSMITTER

REASON = netns.unavailable() if sys.platform == "linux" else "network namespaces are Linux's"
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"multi-host test skipped: {REASON}")
TOKEN = secrets.token_hex(16)


class Hosts:
    """The running services, one per host, and the operator's view of the panel."""

    def __init__(self, lan: netns.Lan, folder: Path, checkpoints: Path):
        self.lan, self.folder, self.checkpoints = lan, folder, checkpoints
        self.services: dict[str, Service] = {}
        self.operator = netns.On(lan, "operator")
        self.auth = folder / "auth"
        auth.init_dir(self.auth, ["eve1", "eve2"])

    def start(self, host: str, module: str, args: list[str], env: dict[str, str] | None = None) -> Service:
        svc = Service(host, module, args, self.folder, "grpc", extra_env={"DIFFSEM_GRPC_KEEPALIVE_S": "2", **(env or {})},
                      prefix=self.lan.prefix(host))
        self.services[host] = svc
        svc.start()
        wait_until(lambda: svc.read_ports() or not svc.alive, 120, f"{host} to bind its port", poll_s=0.2)
        assert svc.alive, svc.log_tail()
        return svc

    def address(self, host: str, key: str = "grpc") -> str:
        return f"{self.lan.hosts[host]}:{self.services[host].ports[key]}"

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"http://{self.address('panel', 'http')}{path}"

        def call() -> dict[str, Any]:
            req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())

        return self.operator(call)

    def summary(self) -> dict[str, Any]:
        return self.http("GET", "/api/summary")

    def attached(self, name: str) -> bool:
        return bool(self.summary()["links"].get(name, {}).get("attached"))

    def run(self, n: int, **options: Any) -> str:
        return self.http("POST", "/api/runs", {"n": n, "batch_size": 50, **options})["id"]

    def wait_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        return wait_until(lambda: (r := self.http("GET", f"/api/runs/{run_id}"))["status"] in ("done", "failed") and r,
                          timeout, f"run {run_id}", poll_s=0.5)

    def stop(self) -> None:
        for svc in reversed(list(self.services.values())):
            svc.stop()
        self.operator.close()


@pytest.fixture(scope="module")
def hosts(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory):
    lan = netns.Lan()
    h = None
    try:
        for name in ("emulator", "transmitter", "panel", "receiver", "eve1", "eve2", "operator"):
            lan.add(name)
        h = Hosts(lan, tmp_path_factory.mktemp("multihost"), checkpoints)
        ip = lan.hosts
        key = {"auth_key_file": h.auth / "authority.key"}
        h.start("emulator", "channel_emulator", EMULATOR.argv(host=ip["emulator"], port=0, snr_db=10.0, seed=0, **key))
        model = {"checkpoints": checkpoints, "device": "cpu", "threads": 1}
        h.start("transmitter", "transmitter", TRANSMITTER.argv(
            host=ip["transmitter"], port=0, emulator=h.address("emulator"), seed=0, t_star=300,
            credential_file=h.auth / "transmitter.credential", **model, **key))
        h.start("panel", "control_panel", [
            "--host", ip["panel"], "--http-port", "0", "--telemetry-port", "0", "--transmitter", h.address("transmitter"),
            "--emulator", h.address("emulator"), "--credential-file", str(h.auth / "control.credential"),
            "--auth-key-file", str(h.auth / "authority.key")],
            env={"DIFFSEM_PANEL_TOKEN": TOKEN, "DIFFSEM_DB": str(h.folder / "panel.db")})
        listen = {"emulator": h.address("emulator"), "telemetry": h.address("panel", "telemetry")}
        h.start("receiver", "receiver", RECEIVER.argv(
            host=ip["receiver"], port=0, mode="direct", credential_file=h.auth / "receiver.credential", **listen, **model,
            **key))
        for eve in ("eve1", "eve2"):
            h.start(eve, "eavesdropper", EAVESDROPPER.argv(
                host=ip[eve], port=0, name=eve, attack="feature-classifier", snr_offset_db=0.0,
                credential_file=h.auth / f"{eve}.credential", auth_pins_file=h.auth / auth.PINS_FILE, **listen, **model))
        wait_until(lambda: all(h.attached(n) for n in ("receiver", "eve1", "eve2")), 240, "every listener attached",
                   poll_s=0.5)
        yield h
    finally:
        if h is not None:
            h.stop()
        lan.close()


def test_every_service_binds_its_hosts_address_not_loopback(hosts: Hosts) -> None:
    for host, svc in hosts.services.items():
        out = subprocess.run([*hosts.lan.prefix(host), "ss", "-Hltn"], capture_output=True, text=True, timeout=30)
        ports = {svc.ports["http" if host == "panel" else "grpc"]} | ({svc.ports["telemetry"]} if host == "panel" else set())
        for port in ports:
            local = [ln.split()[3] for ln in out.stdout.splitlines() if ln.split()[3].endswith(f":{port}")]
            assert local and all(hosts.lan.hosts[host] in a for a in local), (host, port, local)  # its address only


def test_a_500_image_run_across_hosts(hosts: Hosts) -> None:
    run = hosts.wait_run(hosts.run(500))
    assert run["status"] == "done" and run["decided"] == 500 and run["gave_up"] == 0, run
    assert run["accuracy"]["receiver"] > 0.9
    wait_until(lambda: all(hosts.http("GET", f"/api/runs/{run['id']}")["listeners"][e]["reports"] == 500
                           for e in ("eve1", "eve2")), 60, "both eavesdroppers' reports", poll_s=0.5)


def test_cutting_an_eavesdropper_host_detaches_it_and_no_legitimate_frame_is_lost(hosts: Hosts) -> None:
    before = hosts.summary()
    hosts.lan.cut("eve1")
    wait_until(lambda: not hosts.attached("eve1"), 30, "eve1 detached after its link was cut", poll_s=0.5)
    run = hosts.wait_run(hosts.run(300))
    wait_until(lambda: hosts.http("GET", f"/api/runs/{run['id']}")["listeners"]["eve2"]["reports"] == 300, 60,
               "eve2's reports", poll_s=0.5)
    after = hosts.summary()
    assert run["status"] == "done" and run["decided"] == 300 and run["retransmits"] == 0 and run["gave_up"] == 0
    assert "eve1" not in run["expected"]  # a detached listener is not waited for
    rx0, rx1 = before["links"]["receiver"], after["links"]["receiver"]
    assert rx1["dropped_queue"] == rx0["dropped_queue"] and rx1["lost"] == rx0["lost"]  # no legitimate frame lost
    assert after["links"]["eve2"]["dropped_queue"] == before["links"]["eve2"]["dropped_queue"]  # eve2 never noticed
    assert after["listeners"]["eve1"]["reports"] == before["listeners"]["eve1"]["reports"]


def test_restoring_the_link_lets_the_eavesdropper_attach_again(hosts: Hosts) -> None:
    hosts.lan.restore("eve1")
    wait_until(lambda: hosts.attached("eve1"), 60, "eve1 attached again", poll_s=0.5)
    run = hosts.wait_run(hosts.run(200))
    assert "eve1" in run["expected"]
    wait_until(lambda: hosts.http("GET", f"/api/runs/{run['id']}")["listeners"]["eve1"]["reports"] == 200, 60,
               "eve1's reports of the new run", poll_s=0.5)


def test_cutting_the_receiver_host_mid_run_retransmits_and_the_counts_stay_consistent(hosts: Hosts) -> None:
    n = 400
    before = hosts.summary()
    run_id = hosts.run(n, retry_after_s=3, max_retries=20)
    wait_until(lambda: hosts.http("GET", f"/api/runs/{run_id}")["decided"] >= 100, 120, "100 decisions", poll_s=0.3)
    hosts.lan.cut("receiver")
    # the panel notices: no decision for retry_after_s, so it sends the undecided messages again
    wait_until(lambda: hosts.http("GET", f"/api/runs/{run_id}")["retransmits"] > 0, 60, "retransmissions", poll_s=0.5)
    wait_until(lambda: not hosts.attached("receiver"), 30, "the receiver detached", poll_s=0.5)
    hosts.lan.restore("receiver")
    run = hosts.wait_run(run_id)
    after = hosts.summary()
    assert run["status"] == "done" and run["decided"] == n and run["gave_up"] == 0, run
    assert run["retransmits"] > 0
    assert run["listeners"]["receiver"]["reports"] == n  # each image counted once, however often it was sent
    assert after["listeners"]["receiver"]["reports"] - before["listeners"]["receiver"]["reports"] == n
    rx0, rx1 = before["links"]["receiver"], after["links"]["receiver"]
    undelivered = sum(rx1[k] - rx0[k] for k in ("dropped_queue", "lost", "no_listener"))
    assert undelivered > 0  # the panel's link counters show the frames the cut receiver never got
    assert rx1["frames_in"] - rx0["frames_in"] == n + run["retransmits"]  # every send, first or again, counted once
    assert hosts.attached("receiver")
    wait_until(lambda: hosts.http("GET", f"/api/runs/{run_id}")["listeners"]["eve2"]["reports"] == n, 60,
               "eve2's reports", poll_s=0.5)
