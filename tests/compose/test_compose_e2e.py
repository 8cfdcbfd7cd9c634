"""`docker compose up` for real: the README's compose commands, in order, on a real engine.

Docker Engine when it answers, else Podman driven by Debian's docker-compose 1.29 (tests/compose/engine.py). Every
check goes through the published ports or `docker-compose exec`, as a user would. The steps share one stack and run
in file order; a failed step fails the ones after it. Skips only where no engine can run at all, with the reason; in
CI (CI=true) that is a failure instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.compose.engine import Engine, engine_or_skip
from tests.compose.stack import CUSTOM, ROOT, Stack, ensure_base_image, ensure_wheels, free_port, image_env, wait_until

PROJECT = "diffsemtest"
ALL_PROFILES = "feature,inversion,custom"
MAX_IMAGE_BYTES = 1.2e9
FIGURES: dict[str, Any] = {}  # printed at the end: the numbers the README quotes
PROBE = (Path(__file__).parent / "probe.py").read_text()  # run inside containers as `python -c`
PUBLISHED_PORTS = ("DIFFSEM_HTTP_PORT", "DIFFSEM_TRANSMITTER_PORT", "DIFFSEM_EMULATOR_PORT", "DIFFSEM_RECEIVER_PORT")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with engine_or_skip() as eng:
        yield eng


@pytest.fixture(scope="module")
def stack(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    empty_seed = tmp_path_factory.mktemp("no-data")  # first without data: the missing-data message is a step
    env = image_env() | {k: str(free_port()) for k in PUBLISHED_PORTS} | \
        {"DIFFSEM_DATA_DIR": str(empty_seed), "DIFFSEM_LOG_FORMAT": "text"}
    st = Stack(engine, PROJECT, env)
    st.compose("down", "-v", "--remove-orphans", files=CUSTOM, env={"COMPOSE_PROFILES": ALL_PROFILES}, check=False)
    try:
        yield st
    finally:
        st.compose("down", "-v", "--remove-orphans", files=CUSTOM, env={"COMPOSE_PROFILES": ALL_PROFILES},
                   check=False)
        print("\n".join(["compose commands:", *st.log, "figures: " + json.dumps(FIGURES, indent=1)]))


def _iso(ts: str) -> float:
    """Seconds since the epoch from the engine's RFC 3339 time stamps (nanoseconds cut to microseconds)."""
    ts = re.sub(r"(\.\d{6})\d+", r"\1", ts.replace("Z", "+00:00"))
    ts = re.sub(r" [A-Z]{3,4}$", "", re.sub(r" ([+-]\d{2})(\d{2})", r"\1:\2", ts))  # Podman: "... +0000 UTC"
    return datetime.fromisoformat(ts.replace(" ", "T", 1)).timestamp()


def _first_healthy(st: Stack, service: str) -> float:
    """When the service's first passing healthcheck began: the harness's record on Podman (the engine's log keeps
    only the last five checks, so on a slow start the first ones are gone), else the earliest in that log."""
    info = st.inspect(service)
    if st.engine.health is not None and info["Id"] in st.engine.health.first_healthy:
        return st.engine.health.first_healthy[info["Id"]]
    log = (info["State"].get("Health") or info["State"].get("Healthcheck") or {}).get("Log") or []
    return min(_iso(e["Start"]) for e in log if e.get("ExitCode") == 0)


def _started(st: Stack, service: str) -> float:
    return _iso(st.inspect(service)["State"]["StartedAt"])


def _png_of_test_digit(index: int) -> tuple[bytes, int]:
    from PIL import Image

    from diffsem.data import load_split

    images, labels = load_split("mnist", "test")
    buf = io.BytesIO()
    Image.fromarray((images[index, 0].numpy() * 255).astype("uint8")).save(buf, format="PNG")
    return buf.getvalue(), int(labels[index])


def _links(st: Stack) -> dict[str, Any]:
    with st.http() as c:
        return c.get("/api/links").json()["links"]


def _reported_completely(run: dict[str, Any], listener: str, n: int) -> bool:
    t = run["listeners"].get(listener) or {}
    return t.get("reports", 0) + t.get("lost", 0) >= n


# ---- 1. build -----------------------------------------------------------------------------------------------
def test_01_build_one_image_offline_within_the_size_limit(stack: Stack) -> None:
    ensure_base_image(stack.engine)
    ensure_wheels()
    t0 = time.monotonic()
    stack.compose("build", timeout=1800)
    FIGURES["build_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    stack.compose("build", timeout=1800)
    FIGURES["build_cached_s"] = round(time.monotonic() - t0, 1)
    size = int(stack.engine.engine("image", "inspect", "diffsem:latest", "--format", "{{.Size}}", check=True).stdout)
    base = stack.engine.engine("image", "inspect", image_env()["DIFFSEM_BASE_IMAGE"], "--format", "{{.Size}}",
                               check=True).stdout
    FIGURES.update(image_bytes=size, base_bytes=int(base))
    assert size <= MAX_IMAGE_BYTES, f"diffsem:latest is {size / 1e9:.2f} GB"
    # the services need neither grpcio-tools nor the dev tools, and the wheels never reach the image
    probe = stack.engine.engine("run", "--rm", "--entrypoint", "sh", "diffsem:latest", "-c",
                                "python -c 'import grpc_tools' 2>/dev/null && echo tools; "
                                "python -c 'import pytest' 2>/dev/null && echo pytest; ls / | grep -x wheels; true",
                                check=True)
    assert probe.stdout.split() == []


def test_01b_a_build_without_network_or_wheels_fails_early_saying_how_to_build_offline(stack: Stack,
                                                                                         tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "scripts").mkdir(parents=True)
    (ctx / "wheels").mkdir()
    (ctx / "Dockerfile").write_text((ROOT / "Dockerfile").read_text())
    (ctx / "scripts" / "pip-source").write_bytes((ROOT / "scripts" / "pip-source").read_bytes())
    (ctx / "scripts" / "pip-source").chmod(0o755)
    base = ["build", "--network", "none", "--build-arg", f"BASE_IMAGE={image_env()['DIFFSEM_BASE_IMAGE']}"]
    for offline, says in (("0", "cannot reach"), ("1", "holds no torch 2.13.0 wheel")):
        t0 = time.monotonic()
        done = stack.engine.engine(*base, "--build-arg", f"PIP_OFFLINE={offline}", str(ctx), timeout=300)
        out = done.stdout + done.stderr
        assert done.returncode != 0 and says in out and "scripts/wheels" in out and "PIP_OFFLINE=1" in out, out[-2000:]
        assert time.monotonic() - t0 < 120


# ---- 2. up, gated by healthchecks ---------------------------------------------------------------------------
def test_02_up_starts_in_health_order(stack: Stack) -> None:
    # free ports chosen now, not when the fixture ran: a build can take many minutes, and another process on a
    # shared machine may have taken the fixture's ports since
    stack.env |= {k: str(free_port()) for k in PUBLISHED_PORTS}
    t0 = time.monotonic()
    stack.compose("up", "-d", timeout=900)
    core = ["channel_emulator", "transmitter", "control_panel", "receiver"]
    wait_until("every core service healthy", lambda: all(stack.health(s) == "healthy" for s in core), 600, every=2)
    FIGURES["up_to_healthy_s"] = round(time.monotonic() - t0, 1)
    # depends_on: condition: service_healthy held each service back until what it needs was healthy
    assert _started(stack, "transmitter") >= _first_healthy(stack, "channel_emulator")
    assert _started(stack, "receiver") >= _first_healthy(stack, "control_panel")
    assert stack.inspect("credentials")["State"]["ExitCode"] == 0


def test_02b_without_data_a_run_says_what_is_missing_then_the_data_service_fills_the_volume(stack: Stack) -> None:
    wait_until("the data service to finish", lambda: stack.inspect("data")["State"]["Status"] == "exited", 300)
    logs = stack.compose("logs", "--no-color", "data").stdout
    assert stack.inspect("data")["State"]["ExitCode"] != 0 and "missing" in logs and "Fetch with" in logs, logs[-2000:]
    with stack.http() as c:  # refused at once (4xx), or accepted and then failed: either way, the documented message
        r = c.post("/api/runs", json={"dataset": "mnist", "n": 10})
        error = r.json()["detail"] if r.status_code != 202 else \
            wait_until("the run to fail", lambda: (x := c.get(r.json()["url"]).json())["status"] == "failed" and x,
                       120)["error"]
    assert r.status_code in (202, 400, 404, 409, 422, 503), r.text
    assert "missing" in error and "Fetch with" in error and "Read-only" not in error, error
    from diffsem.data import default_data_dir

    stack.env["DIFFSEM_DATA_DIR"] = str(default_data_dir())  # where scripts/setup fetched it on the host
    stack.compose("up", "-d", "data")
    wait_until("the data service to verify MNIST", lambda: stack.inspect("data")["State"]["Status"] == "exited", 300)
    assert stack.inspect("data")["State"]["ExitCode"] == 0, stack.compose("logs", "--no-color", "data").stdout[-2000:]


# ---- 3. one PNG through the published port --------------------------------------------------------------------
def test_03_transmit_a_png_returns_a_decision(stack: Stack) -> None:
    png, label = _png_of_test_digit(0)
    with stack.http() as c:
        r = c.post("/api/transmit", files={"file": ("digit.png", png, "image/png")}, data={"label": str(label)})
    assert r.status_code == 200, r.text
    assert r.json()["receiver"]["label"] == label


# ---- 4. 200 test images -----------------------------------------------------------------------------------------
def test_04_two_hundred_images_keep_accuracy_and_lose_nothing(stack: Stack) -> None:
    run = stack.run_images(200)
    assert run["status"] == "done", run
    rx = run["listeners"]["receiver"]
    FIGURES["run200_receiver"] = rx["accuracy"]
    assert rx["accuracy"] >= 0.97 and rx["lost"] == 0 and rx["labelled"] == 200, rx


# ---- 5. eavesdroppers join the running stack ----------------------------------------------------------------------
def test_05_feature_and_inversion_eavesdroppers_attach_and_report(stack: Stack) -> None:
    stack.compose("up", "-d", env={"COMPOSE_PROFILES": "feature,inversion"}, timeout=900)
    eves = ["eve-feature", "eve-inversion"]
    wait_until("both eavesdroppers healthy", lambda: all(stack.health(e) == "healthy" for e in eves), 600, every=2)
    wait_until("both links attached", lambda: all(_links(stack).get(e, {}).get("attached") for e in eves), 120)
    run = stack.run_images(200)
    FIGURES["run200_with_eves"] = {n: t["accuracy"] for n, t in run["listeners"].items()}
    assert run["listeners"]["receiver"]["accuracy"] >= 0.97
    for eve in eves:
        assert run["listeners"][eve]["reports"] > 0, (eve, run["listeners"])
    # every attached listener's reports are in when the run says done (the panel's completion rule)
    assert all(_reported_completely(run, eve, 200) for eve in eves), run["listeners"]


def _probe(st: Stack, service: str, *args: str, files: list[str] | None = None) -> Any:
    """Run tests/compose/probe.py inside ``service`` as the eavesdropper's own code would; its JSON answer."""
    return json.loads(st.exec(service, "python", "-c", PROBE, *args, files=files).stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def _host_listener() -> Iterator[tuple[int, str, list[str]]]:
    """A TCP listener on the host's wildcard address (0.0.0.0, a free port) and an abstract Unix socket, each
    counting the connections it accepts: (port, abstract name, peers accepted so far)."""
    tcp = socket.create_server(("0.0.0.0", 0))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"diffsem-host-{secrets.token_hex(4)}"
    abstract.bind("\0" + name)
    abstract.listen(16)
    peers: list[str] = []

    def accept(srv: socket.socket, kind: str) -> None:
        while True:
            try:
                conn, addr = srv.accept()
            except OSError:
                return
            peers.append(f"{kind} {addr}")
            conn.close()

    for srv, kind in ((tcp, "tcp"), (abstract, "abstract")):
        threading.Thread(target=accept, args=(srv, kind), daemon=True).start()
    try:
        yield tcp.getsockname()[1], name, peers
    finally:
        tcp.close()
        abstract.close()


def _host_addresses() -> set[str]:
    """Every IPv4 address of the host's interfaces (the engine's bridges included)."""
    done = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=30, check=True)
    return {a["local"] for link in json.loads(done.stdout) for a in link.get("addr_info", [])}


def test_05b_an_eavesdropper_reaches_only_its_two_sockets_never_the_host_or_another_eavesdropper(stack: Stack) -> None:
    nets = stack.inspect("tap_gateway")["NetworkSettings"]["Networks"]
    control_gw = next(iter(nets.values()))["Gateway"]  # the host, as a container on `control` sees it
    tx_ip = next(iter(stack.inspect("transmitter")["NetworkSettings"]["Networks"].values()))["IPAddress"]
    eve_socket = f"diffsem-eve-{secrets.token_hex(4)}"  # an abstract Unix socket that eve-inversion holds
    stack.compose("exec", "-d", "eve-inversion", "python", "-c", PROBE, "--listen", eve_socket, "60")
    with _host_listener() as (port, host_socket, peers):
        # the listener is open to containers on a network: from `control`, the host is its network's gateway
        target = f"{control_gw}:{port}"
        assert _probe(stack, "tap_gateway", "--reach", target)["reach"] == {target: True}
        wait_until("eve-inversion's abstract socket",
                   lambda: _probe(stack, "eve-inversion", "--abstract", eve_socket)["abstract"][eve_socket], 60)
        seen = len(peers)
        host = {f"{ip}:{port}" for ip in _host_addresses() | {control_gw, "127.0.0.1", "10.0.2.2", "172.17.0.1"}}
        others = {"host.containers.internal:" + str(port), "host.docker.internal:" + str(port), "transmitter:50051",
                  "receiver:50053", "control_panel:8000", "control_panel:50060", "channel_emulator:50052",
                  "channel_emulator:9100", f"{tx_ip}:50051", "tap_gateway:50052", "eve-inversion:50054"}
        view = _probe(stack, "eve-feature", "--reach", *sorted(host | others), "--abstract", host_socket, eve_socket,
                      "--sockets", "--list", "/credentials", "--read", "/credentials/credential",
                      "/credentials/control.pins")
        assert view["reach"] == {t: False for t in host | others}, {t: ok for t, ok in view["reach"].items() if ok}
        # the host's and the other eavesdropper's abstract sockets live in other network namespaces
        assert view["abstract"] == {host_socket: False, eve_socket: False}
        assert len(peers) == seen, peers[seen:]  # nothing from the eavesdropper arrived
    FIGURES["eve_probed_host_addresses"] = sorted(host)
    # no interface but loopback, no route, and the tap folder holds exactly the gateway's two sockets, which it can
    # use (test 05: it attached and reported through them) but neither replace nor add to (a read-only mount)
    assert view["sockets"] == {"interfaces": ["lo"], "routes": 0, "tap": ["emulator.sock", "telemetry.sock"],
                               "tap_sockets": ["emulator.sock", "telemetry.sock"], "bind_in_tap": "EROFS",
                               "unlink_in_tap": "EROFS", "rename_in_tap": "EROFS"}, view["sockets"]
    # its own credential and its pins (the panel's audience key for it), nothing else: no other credential, no key
    assert view["list"] == {"/credentials": ["control.pins", "credential"]}
    assert view["read"]["/credentials/credential"].startswith("v2.eavesdropper.eve-feature.")
    pins = view["read"]["/credentials/control.pins"]
    assert pins.split()[1:] == ["control", "control"] and "v2." not in pins  # an audience key, never a credential


def test_05c_an_eavesdropper_calling_the_emulators_control_rpc_is_refused(stack: Stack) -> None:
    call = ("import grpc, os\nfrom services_common import auth\nfrom protos.diffsem.v1 import channel_emulator_pb2 as pb,"
            " channel_emulator_pb2_grpc as rpc\nch = auth.with_credential(grpc.insecure_channel('unix:///tap/emulator.sock'),"
            " auth.credential_from(None))\ntry:\n    rpc.ChannelEmulatorStub(ch).Configure(pb.ConfigureRequest("
            "validate_only=True), timeout=10); print('OK')\nexcept grpc.RpcError as e:\n    print(e.code().name)")
    done = stack.exec("eve-feature", "python", "-c", call)
    assert done.stdout.strip().splitlines()[-1] in ("PERMISSION_DENIED", "UNAUTHENTICATED"), done.stdout


def _assert_confined(st: Stack, service: str, seen: dict[str, Any], files: list[str] | None = None) -> None:
    """An eavesdropper's code cannot raise its privileges, write outside its scratch space, or escape its limits."""
    expected = {"uid": 10001, "euid": 10001, "NoNewPrivs": "1", "Seccomp": "2", "setuid_files": [],
                "write_opt": "EROFS", "write_home": "EROFS", "write_etc": "EROFS", "write_tmp": "ok",
                "exec_tmp": "EACCES", "raw_inet": "EPERM", "raw_packet": "EPERM"}
    zero = "0000000000000000"
    assert {k: seen[k] for k in expected} == expected, seen
    assert {seen[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {zero}, seen
    # not asserted: a new user namespace, which both engines' default seccomp profiles allow (docs/operations.md)
    FIGURES.setdefault("eve_new_user_namespace", {})[service] = seen["unshare_user"]
    svc = _resolved_service(st, service, files)
    assert int(seen["memory_max"].split()[0]) == _bytes(svc["mem_limit"]), seen
    assert int(seen["pids_max"]) == int(svc["pids_limit"]), seen
    quota = [int(x) for x in seen["cpu_quota"].split()]  # v1: quota; v2: "quota period"
    assert quota[0] / (quota[1] if len(quota) > 1 else 100_000) == float(svc["cpus"]), seen


def _bytes(size: str | int) -> int:
    size = str(size).lower()
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(size[:-1]) * units[size[-1]]) if size[-1] in units else int(size)


def _resolved_service(st: Stack, service: str, files: list[str] | None = None) -> dict[str, Any]:
    import yaml

    return yaml.safe_load(st.compose("config", files=files).stdout)["services"][service]


def test_05d_an_eavesdropper_cannot_raise_privileges_or_exceed_its_limits(stack: Stack) -> None:
    seen = _probe(stack, "eve-inversion", "--privileges", "--exhaust")  # eve-inversion: test 06 stops it next
    FIGURES["eve_threads_before_the_pids_limit"] = seen["threads_started"]
    _assert_confined(stack, "eve-inversion", seen["privileges"])
    assert 0 < seen["threads_started"] < int(seen["privileges"]["pids_max"]), seen  # a fork bomb stops at the limit


# ---- 6. stop one eavesdropper ----------------------------------------------------------------------------------
def test_06_stopping_one_eavesdropper_leaves_the_others_untouched(stack: Stack) -> None:
    stack.compose("stop", "eve-inversion")
    wait_until("eve-inversion's link to show detached", lambda: _links(stack)["eve-inversion"]["attached"] is False, 120)
    run = stack.run_images(100)
    assert run["status"] == "done"
    assert run["listeners"]["receiver"]["accuracy"] >= 0.97 and run["listeners"]["receiver"]["lost"] == 0
    assert run["listeners"]["eve-feature"]["reports"] > 0
    assert (run["listeners"].get("eve-inversion") or {}).get("reports", 0) == 0
    assert stack.health("eve-feature") == "healthy"


# ---- 7. a custom attack container -------------------------------------------------------------------------------
def test_07_custom_attack_container_attaches_and_reports(stack: Stack) -> None:
    stack.compose("build", "eve-custom", files=CUSTOM, timeout=900)
    stack.compose("run", "--rm", "train-custom", files=CUSTOM, env={"COMPOSE_PROFILES": "custom-train"}, timeout=900)
    stack.compose("up", "-d", "eve-custom", files=CUSTOM, env={"COMPOSE_PROFILES": "custom"}, timeout=900)
    wait_until("eve-custom healthy", lambda: stack.health("eve-custom") == "healthy", 600, every=2)
    wait_until("eve-custom attached", lambda: _links(stack).get("eve-custom", {}).get("attached"), 120)
    run = stack.run_images(100)
    custom = run["listeners"]["eve-custom"]
    FIGURES["run100_custom"] = custom["accuracy"]
    assert custom["reports"] > 0 and custom["accuracy"] is not None and custom["accuracy"] > 0.5, custom
    # its own image (built on ours as root) is confined as the built-in eavesdroppers are, with no network either
    seen = _probe(stack, "eve-custom", "--privileges", "--sockets", files=CUSTOM)
    _assert_confined(stack, "eve-custom", seen["privileges"], files=CUSTOM)
    assert seen["sockets"]["interfaces"] == ["lo"] and seen["sockets"]["routes"] == 0, seen["sockets"]


# ---- 7b. keyless privacy from the antennas, set live -------------------------------------------------------------
def test_07b_null_space_self_noise_set_live_keeps_the_receiver_and_drops_a_one_antenna_eavesdropper(stack: Stack) -> None:
    """The ``antennas`` scenario's link (4 transmit antennas, null-space self-noise, 20 dB), set by the operator through
    the panel on the running stack; thresholds as in tests/services/test_svc_antennas_scenario.py."""
    on = {"snr_db": 20, "antennas": {"n_tx": 4, "null_space": True, "beam_fraction": 0.01}}
    with stack.http() as c:
        before = c.get("/api/links").json()["links"]["receiver"]
        r = c.put("/api/links", json={"links": {"receiver": on}})
        assert r.status_code == 200, r.text
        assert c.get("/api/links").json()["links"]["eve-feature"]["antennas"]["n_rx"] == 1
    run = stack.run_images(200)
    FIGURES["run200_antennas_nt4_20dB"] = {n: t["accuracy"] for n, t in run["listeners"].items()}
    assert run["listeners"]["receiver"]["accuracy"] >= 0.90 and run["listeners"]["receiver"]["lost"] == 0, run
    assert run["listeners"]["eve-feature"]["accuracy"] <= 0.50, run["listeners"]["eve-feature"]
    off = {"snr_db": before["snr_db"], "antennas": {"n_tx": 1, "null_space": False, "beam_fraction": 1.0}}
    with stack.http() as c:
        r = c.put("/api/links", json={"links": {"receiver": off}})
        assert r.status_code == 200, r.text
        assert c.get("/api/links").json()["links"]["receiver"]["antennas"]["n_tx"] == 1


# ---- 8. keyed self-noise through the environment ----------------------------------------------------------------
def test_08_keyed_self_noise_keeps_the_receiver_and_drops_the_eavesdroppers(stack: Stack) -> None:
    keyed = {"DIFFSEM_SELF_NOISE": "keyed", "DIFFSEM_SELF_NOISE_KEY": secrets.token_hex(32), "DIFFSEM_T_STAR": "700"}
    stack.env |= keyed
    stack.compose("up", "-d", "--no-deps", "transmitter", "receiver", timeout=900)
    wait_until("transmitter and receiver healthy again",
               lambda: all(stack.health(s) == "healthy" for s in ("transmitter", "receiver")), 600, every=2)
    with stack.http() as c:  # the panel's channel to the old transmitter may still be backing off: retry until it
        r = wait_until("the panel to apply the links through the new transmitter",  # reaches the new one
                       lambda: (x := c.put("/api/links", json={"links": {"receiver": {"snr_db": 20}}})).status_code
                       not in (503, 504) and x, 180, every=2)
        assert r.status_code == 200, r.text
    wait_until("the receiver to attach", lambda: _links(stack)["receiver"]["attached"], 120)
    run = stack.run_images(200)
    FIGURES["run200_keyed_t700_20dB"] = {n: t["accuracy"] for n, t in run["listeners"].items()}
    assert run["listeners"]["receiver"]["accuracy"] >= 0.95, run["listeners"]
    for eve in ("eve-feature", "eve-custom"):
        assert run["listeners"][eve]["accuracy"] <= 0.6, (eve, run["listeners"][eve])


# ---- 9. the receiver dies mid-run ---------------------------------------------------------------------------------
def test_09_a_killed_receiver_comes_back_and_the_counts_stay_consistent(stack: Stack) -> None:
    kill = ("import os, signal\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
            "        cmd = open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')\n"
            "        if cmd[1:3] == [b'-m', b'receiver']:\n            os.kill(int(p), signal.SIGKILL); print(p)")
    restarts = stack.inspect("receiver")["RestartCount"]
    with stack.http() as c:
        url = c.post("/api/runs", json={"dataset": "mnist", "n": 600, "batch_size": 50}).json()["url"]
        wait_until("the run to get going", lambda: c.get(url).json()["decided"] >= 100, 300, every=0.5)
        assert stack.exec("receiver", "python", "-c", kill).stdout.strip()
        wait_until("the restart policy to bring the receiver back",
                   lambda: stack.inspect("receiver")["RestartCount"] > restarts and stack.health("receiver") == "healthy",
                   600, every=2)
        run = wait_until("the run to finish", lambda: (r := c.get(url).json())["status"] not in ("queued", "running")
                         and r, 600, every=2)
    rx = run["listeners"]["receiver"]
    assert run["status"] == "done", run
    assert rx["labelled"] + run["gave_up"] <= 600 and rx["correct"] <= rx["labelled"]  # nothing counted twice
    assert run["decided"] + run["gave_up"] == 600, run  # every image decided or given up, none forgotten


# ---- a missing checkpoint: a clear line and an unhealthy container, no crash loop --------------------------------
def test_09b_a_missing_checkpoint_gives_one_clear_line_and_no_restart_loop(stack: Stack, tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # an empty but readable folder: the service's uid must see that bundle.json is missing
    stack.compose("up", "-d", "--no-deps", "transmitter", env={"DIFFSEM_CHECKPOINTS": str(tmp_path)})
    wait_until("the refusal in the log",
               lambda: "refused its configuration" in stack.compose("logs", "--no-color", "transmitter").stdout, 300)
    state = stack.inspect("transmitter")
    logs = stack.compose("logs", "--no-color", "transmitter").stdout
    assert "no bundle.json" in logs and "Traceback" not in logs, logs[-3000:]
    assert state["State"]["Status"] == "running" and state["RestartCount"] == 0
    hc = stack.engine.engine("healthcheck", "run", f"{PROJECT}_transmitter_1") if stack.engine.kind == "podman" else \
        stack.engine.engine("exec", f"{PROJECT}_transmitter_1", "python", "-m", "services_common.healthcheck",
                            "127.0.0.1:50051")
    assert hc.returncode != 0  # unhealthy


# ---- 10. down -------------------------------------------------------------------------------------------------------
def test_10_down_leaves_no_container_network_or_volume(stack: Stack) -> None:
    stack.compose("down", "-v", "--remove-orphans", files=CUSTOM, env={"COMPOSE_PROFILES": ALL_PROFILES})
    assert stack.containers() == []
    assert stack.networks() == []
    volumes = stack.engine.engine("volume", "ls", "--format", "{{.Name}}", check=True).stdout.split()
    assert [v for v in volumes if v.startswith(f"{PROJECT}_")] == []
