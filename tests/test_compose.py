"""docker-compose.yml's resolved configuration, read with Debian's docker-compose (v1.29) `config`: no engine needed.

These are the fast checks of what each container may read and reach; tests/compose/ runs the stack for real.
scripts/setup installs docker-compose (apt); without it these tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose")
pytestmark = pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed (scripts/setup installs it)")
CORE = {"channel_emulator", "transmitter", "control_panel", "receiver"}
INIT = {"credentials", "data"}
VERIFIERS = {"channel_emulator", "transmitter", "receiver", "control_panel"}  # hold the authority key
EVES = {"eve-feature": "feature", "eve-inversion": "inversion", "eve-whitebox": "whitebox"}


def resolved(*files: str, **env: str) -> dict:
    args = [COMPOSE]
    for f in files:
        args += ["-f", f]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFSEM_", "COMPOSE_"))}
    out = subprocess.run([*args, "config"], cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def volume_sources(svc: dict) -> list[str]:
    out = []
    for v in svc.get("volumes", []):
        out.append(v["source"] if isinstance(v, dict) else v.split(":")[0])
    return out


def test_core_services_one_image_and_grpc_healthchecks():
    cfg = resolved()
    services = cfg["services"]
    assert CORE | INIT | {"tap_gateway"} <= set(services)
    assert len({s["image"] for s in services.values()}) == 1  # one image runs every service
    assert [n for n, s in services.items() if "build" in s] == ["credentials"]  # ... and is built once
    for name in CORE | set(EVES):
        test = services[name]["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "services_common.healthcheck"], name
        assert services[name]["command"][:3] == ["python", "-m", "eavesdropper" if name in EVES else name]
    assert "--http" in services["control_panel"]["healthcheck"]["test"]
    for name in CORE - {"control_panel"}:
        assert "--http" not in services[name]["healthcheck"]["test"]


def test_depends_on_waits_for_healthy_services():
    services = resolved()["services"]
    assert services["transmitter"]["depends_on"]["channel_emulator"]["condition"] == "service_healthy"
    rx = services["receiver"]["depends_on"]
    assert rx["channel_emulator"]["condition"] == rx["control_panel"]["condition"] == "service_healthy"
    gw = services["tap_gateway"]["depends_on"]
    assert gw["channel_emulator"]["condition"] == gw["control_panel"]["condition"] == "service_healthy"
    for eve in EVES:
        assert services[eve]["depends_on"]["tap_gateway"]["condition"] == "service_healthy"
    for name in CORE | set(EVES):
        assert services[name]["depends_on"]["credentials"]["condition"] == "service_completed_successfully", name
    assert not any("data" in (s.get("depends_on") or {}) for s in services.values())  # single images need no data

def test_eavesdroppers_sit_behind_one_profile_each():
    services = resolved()["services"]
    for name, profile in EVES.items():
        assert services[name]["profiles"] == [profile]
    for name in CORE:
        assert "profiles" not in services[name]  # the core always starts
    assert services["eve-feature"]["command"][services["eve-feature"]["command"].index("--attack") + 1] == \
        "feature-classifier"


def test_profiles_select_eavesdroppers():
    # v1.29's `config` keeps every service; `--services` with COMPOSE_PROFILES is what `up` would start.
    def started(profiles: str) -> set[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFSEM_", "COMPOSE_"))}
        out = subprocess.run([COMPOSE, "config", "--services"], cwd=ROOT, capture_output=True, text=True,
                             env=clean | {"COMPOSE_PROFILES": profiles}, timeout=60)
        assert out.returncode == 0, out.stderr
        return set(out.stdout.split())

    assert CORE | {"eve-inversion"} <= started("inversion")
    cfg = resolved(COMPOSE_PROFILES="inversion")
    assert {n for n, s in cfg["services"].items() if "inversion" in s.get("profiles", [])} == {"eve-inversion"}


def all_mounts(svc: dict) -> list[tuple[str, str]]:
    return [(v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2]) for v in svc["volumes"]]


def mounts(svc: dict) -> list[tuple[str, str]]:
    """The host folders and files bound into ``svc`` (named volumes left out)."""
    return [(src, dst) for src, dst in all_mounts(svc) if src.startswith("/")]


def test_no_transmitter_checkpoint_in_black_box_eavesdroppers():
    from diffsem.bundle import EAVESDROPPER_PARTS

    services = resolved()["services"]
    tx_ckpt = {src for src, _ in mounts(services["transmitter"])}
    assert tx_ckpt and tx_ckpt == {src for src, _ in mounts(services["receiver"])}
    (tx_dir,) = tx_ckpt
    allowed = {"bundle.json", "attacks", "judges"} | {f"{p}{s}" for p in EAVESDROPPER_PARTS for s in (".safetensors", ".json")}
    for name in ("eve-feature", "eve-inversion"):
        files = mounts(services[name])
        assert {Path(src).name for src, _ in files} == allowed, name
        for src, dst in files:
            assert Path(src).parent == Path(tx_dir) and dst == f"/checkpoints/{Path(src).name}", (src, dst)
            assert Path(src).exists(), f"{src} is mounted but not shipped"
    wb = services["eve-whitebox"]  # white-box mode, asked for by its profile
    assert any(src in tx_ckpt and dst == "/transmitter" for src, dst in mounts(wb)), mounts(wb)
    assert wb["command"][wb["command"].index("--transmitter-checkpoint") + 1] == "/transmitter"


def test_black_box_eavesdropper_runs_from_its_mounts_alone(tmp_path: Path):
    """Rebuild an eavesdropper container's /checkpoints from the resolved mounts and load it as the service does."""
    import shutil

    import torch

    from diffsem.bundle import EAVESDROPPER_PARTS, load_bundle
    from diffsem.errors import CheckpointError
    from eavesdropper.attacks import make_attack

    for src, dst in mounts(resolved()["services"]["eve-inversion"]):
        target = tmp_path / Path(dst).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if Path(src).is_dir() else shutil.copy)(src, target)
    bundle = load_bundle(tmp_path / "checkpoints", device="cpu", parts=EAVESDROPPER_PARTS)
    for attack in ("feature-classifier", "inversion-decoder", "adaptive-diffusion"):
        make_attack(attack, bundle, checkpoint_root=tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match="'encoder' part was not loaded"):
        bundle.encoder(torch.zeros(1, 1, 28, 28))


def test_ports_checkpoints_and_data_from_environment():
    default = resolved()["services"]
    assert any(p.get("published") in (8000, "8000") and p.get("host_ip") == "127.0.0.1" if isinstance(p, dict)
               else p.startswith("127.0.0.1:8000:") for p in default["control_panel"]["ports"])
    custom = resolved(DIFFSEM_HTTP_PORT="18080", DIFFSEM_BIND="0.0.0.0", DIFFSEM_CHECKPOINTS="/srv/ckpt",
                      DIFFSEM_DATA_DIR="/srv/data", DIFFSEM_PANEL_TOKEN="s3cret")["services"]
    ports = custom["control_panel"]["ports"]
    assert any((p.get("published") in (18080, "18080") and p.get("host_ip") == "0.0.0.0") if isinstance(p, dict)
               else p.startswith("0.0.0.0:18080:") for p in ports), ports
    assert "/srv/ckpt" in volume_sources(custom["transmitter"])
    assert ("/srv/data", "/seed") in mounts(custom["data"])  # seeds the data volume
    assert ("data", "/data") in all_mounts(custom["control_panel"]) and custom["control_panel"]["volumes"]
    assert custom["control_panel"]["environment"]["DIFFSEM_PANEL_TOKEN"] == "s3cret"


def test_gpu_override_reserves_a_gpu_for_the_receiver_only():
    cfg = resolved("docker-compose.yml", "docker-compose.gpu.yml")["services"]
    devices = cfg["receiver"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "cuda" in cfg["receiver"]["command"]
    assert all("deploy" not in s for n, s in cfg.items() if n != "receiver")
    assert "deploy" not in resolved()["services"]["receiver"]  # a CPU-only host starts without the override


def test_self_noise_key_reaches_transmitter_and_receiver_only():
    key = "ab" * 32
    services = resolved(DIFFSEM_SELF_NOISE="keyed", DIFFSEM_SELF_NOISE_KEY=key)["services"]
    assert services["transmitter"]["environment"]["DIFFSEM_SELF_NOISE"] == "keyed"
    for name in ("transmitter", "receiver"):
        assert services[name]["environment"]["DIFFSEM_SELF_NOISE_KEY"] == key, name
    for name, svc in services.items():
        if name not in ("transmitter", "receiver"):
            assert "DIFFSEM_SELF_NOISE_KEY" not in (svc.get("environment") or {}), name
            assert key not in str(svc), name


def service_settings(svc: dict, spec, monkeypatch: pytest.MonkeyPatch):
    """What the service in container ``svc`` parses: its resolved command line under its resolved environment."""
    for name in [k for k in os.environ if k.startswith("DIFFSEM_")]:
        monkeypatch.delenv(name)
    for name, value in (svc.get("environment") or {}).items():
        monkeypatch.setenv(name, "" if value is None else str(value))
    return spec.parse(svc["command"][3:])  # after "python -m <service>"


@pytest.mark.parametrize("env,emulator,transmitter", [
    # no scenario: the services' defaults, eavesdroppers at the legitimate SNR (no offset, no fixed eve SNR)
    ({}, {"snr_db": 10.0, "eve_snr_db": None, "eve_snr_offset_db": None, "n_tx": 1, "null_space": False},
     {"t_star": 300, "self_noise": "random"}),
    ({"DIFFSEM_SCENARIO": "antennas"},
     {"snr_db": 20.0, "eve_snr_offset_db": 0.0, "n_tx": 4, "null_space": True, "beam_fraction": 0.01},
     {"t_star": 300, "self_noise": "random"}),
    ({"DIFFSEM_SCENARIO": "snr-advantage"}, {"snr_db": 20.0, "eve_snr_offset_db": -10.0, "n_tx": 1},
     {"t_star": 300}),
    ({"DIFFSEM_SCENARIO": "keyed", "DIFFSEM_SELF_NOISE_KEY": "ab" * 32}, {"snr_db": 20.0, "eve_snr_offset_db": 0.0},
     {"t_star": 700, "self_noise": "keyed"}),
    # the operator's own values win over the scenario's
    ({"DIFFSEM_SCENARIO": "antennas", "DIFFSEM_N_TX": "8", "DIFFSEM_T_STAR": "500", "DIFFSEM_SNR_DB": "5"},
     {"snr_db": 5.0, "n_tx": 8, "null_space": True}, {"t_star": 500}),
])
def test_a_scenario_reaches_the_emulator_and_the_transmitter_as_their_settings(env, emulator, transmitter,
                                                                              monkeypatch):
    from channel_emulator.settings import SPEC as EMULATOR
    from transmitter.settings import SPEC as TRANSMITTER

    services = resolved(**env)["services"]
    for name, spec, want in (("channel_emulator", EMULATOR, emulator), ("transmitter", TRANSMITTER, transmitter)):
        got = vars(service_settings(services[name], spec, monkeypatch))
        assert {k: got[k] for k in want} == want, name
    for name, svc in services.items():  # the preset is the operator's; no eavesdropper is told it
        if name not in ("channel_emulator", "transmitter"):
            assert "DIFFSEM_SCENARIO" not in (svc.get("environment") or {}), name


def test_custom_attack_override_adds_a_black_box_eavesdropper_with_its_own_credential():
    services = resolved("docker-compose.yml", "docker-compose.custom-attack.yml")["services"]
    eve = services["eve-custom"]
    assert eve["profiles"] == ["custom"] and "nearest-centroid" in eve["command"]
    assert eve["build"]["context"].endswith("examples/custom_attack") and eve["image"] != services["receiver"]["image"]
    assert eve["network_mode"] == "none" and "networks" not in eve
    names = {Path(src).name for src, _ in mounts(eve)}
    assert names == {"bundle.json", "eavesdropper.safetensors", "eavesdropper.json", "judge.safetensors", "judge.json"}
    assert ("custom-attack", "/checkpoints/attacks") in all_mounts(eve)
    assert ("cred-eve-custom", "/credentials/eve-custom") in all_mounts(services["credentials"])
    assert "DIFFSEM_AUTH_KEY_FILE" not in eve["environment"]
    assert services["train-custom"]["network_mode"] == "none"


def networks_of(svc: dict) -> set[str]:
    return set(svc.get("networks") or {"default"})


def volume_modes(svc: dict) -> dict[str, tuple[str, str]]:
    """target -> (source, "ro" or "rw") for every volume of ``svc``."""
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = (v["source"], "ro" if v.get("read_only") else "rw")
        else:
            src, dst, *mode = v.split(":")
            out[dst] = (src, "ro" if "ro" in mode[:1] else "rw")
    return out


def eavesdroppers(services: dict) -> dict[str, dict]:
    """Every service that runs an eavesdropper (built in or from an override): untrusted code."""
    return {n: s for n, s in services.items() if s.get("command", [])[:3] == ["python", "-m", "eavesdropper"]}


def test_eavesdroppers_have_no_network_and_reach_only_the_gateways_two_sockets():
    cfg = resolved("docker-compose.yml", "docker-compose.custom-attack.yml")
    services = cfg["services"]
    assert set(cfg["networks"]) == {"control"}  # no `tap` network left to share, spoof or route from
    eves = eavesdroppers(services)
    assert set(eves) == set(EVES) | {"eve-custom"}
    for name, svc in eves.items():
        assert svc["network_mode"] == "none" and "networks" not in svc and "ports" not in svc, name
        cmd = svc["command"]
        assert cmd[cmd.index("--emulator") + 1] == "unix:///tap/emulator.sock", name
        assert cmd[cmd.index("--telemetry") + 1] == "unix:///tap/telemetry.sock", name
        assert volume_modes(svc)["/tap"] == ("tap", "ro"), name  # it can connect, never replace a socket
    gw = services["tap_gateway"]
    assert networks_of(gw) == {"control"} and volume_modes(gw)["/tap"] == ("tap", "rw")
    forwards = [gw["command"][i + 1] for i, a in enumerate(gw["command"]) if a == "--forward"]
    assert forwards == ["/tap/emulator.sock=channel_emulator:50052", "/tap/telemetry.sock=control_panel:50060"]
    assert gw["healthcheck"]["test"][-1] == "unix:///tap/emulator.sock"
    assert {n for n, s in services.items() if "/tap" in volume_modes(s)} == set(eves) | {"tap_gateway"}
    for name in CORE:
        assert networks_of(services[name]) == {"control"}, name


CONFINED = {"cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"], "read_only": True,
            "tmpfs": ["/tmp:rw,noexec,nosuid,nodev,size=128m"]}
LIMITS = ("mem_limit", "memswap_limit", "cpus", "pids_limit")


def test_every_container_is_confined_and_only_the_credentials_job_keeps_three_capabilities():
    services = resolved("docker-compose.yml", "docker-compose.custom-attack.yml")["services"]
    for name, svc in services.items():
        assert {k: svc.get(k) for k in CONFINED} == CONFINED, name
        assert "privileged" not in svc, name
        assert ("user" in svc) == (name in ("credentials", "train-custom")), name  # root jobs: no capability ...
        assert ("cap_add" in svc) == (name == "credentials"), name
    assert services["credentials"]["cap_add"] == ["CHOWN", "DAC_OVERRIDE", "FOWNER"]  # chown/chmod into volumes
    assert services["train-custom"]["network_mode"] == "none"


def test_every_eavesdropper_has_the_same_measured_limits_the_override_included():
    """The override cannot use docker-compose.yml's anchor, so it repeats the keys: they must not drift."""
    services = resolved("docker-compose.yml", "docker-compose.custom-attack.yml")["services"]
    eves = eavesdroppers(services)
    limits = {name: {k: svc.get(k) for k in LIMITS} for name, svc in eves.items()}
    assert all(None not in lim.values() for lim in limits.values()), limits
    assert len({tuple(lim.values()) for lim in limits.values()}) == 1, limits
    lim = limits["eve-feature"]
    assert lim["memswap_limit"] == lim["mem_limit"]  # no swap on top of the memory limit
    for name in CORE | {"tap_gateway"}:  # the trusted services' use grows with the operator's settings: unbounded
        assert not set(LIMITS) & set(services[name]), name


def test_each_service_mounts_only_its_own_credentials_and_the_key_only_where_it_verifies():
    services = resolved(COMPOSE_PROFILES="feature,inversion,whitebox")["services"]
    init = dict((dst, src) for src, dst in all_mounts(services["credentials"]))
    assert services["credentials"]["network_mode"] == "none"
    for name in CORE | set(EVES):
        creds = [(src, dst) for src, dst in all_mounts(services[name]) if dst == "/credentials"]
        assert creds == [(f"cred-{name}", "/credentials")], (name, creds)
        assert init[f"/credentials/{name}"] == f"cred-{name}"  # the init service writes exactly that volume
        env = services[name]["environment"]
        assert ("DIFFSEM_AUTH_KEY_FILE" in env) == (name in VERIFIERS), name
        if name != "channel_emulator":
            assert env["DIFFSEM_CREDENTIAL_FILE"] == "/credentials/credential", name
    assert "authority" not in {src for n in CORE | set(EVES) for src, _ in all_mounts(services[n])}


def test_the_antenna_settings_reach_the_emulator_only() -> None:
    """DIFFSEM_N_TX and friends are the emulator's options (it draws every link and the CSI); no other service gets
    them, so an eavesdropper learns its antennas only from its frames."""
    env = {"DIFFSEM_N_TX": "4", "DIFFSEM_NULL_SPACE": "1", "DIFFSEM_BEAM_FRACTION": "0.01", "DIFFSEM_EVE_N_RX": "2"}
    services = resolved(**env)["services"]
    assert {k: services["channel_emulator"]["environment"][k] for k in env} == env
    for name, svc in services.items():
        if name != "channel_emulator":
            assert not set(env) & set(svc.get("environment") or {}), name
