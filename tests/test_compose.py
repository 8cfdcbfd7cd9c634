"""docker-compose.yml validated with Debian's docker-compose (v1.29) `config`; no Docker daemon needed.

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
    assert CORE <= set(services)
    assert len({s["image"] for s in services.values()}) == 1  # one image runs every service
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
    for eve in EVES:
        deps = services[eve]["depends_on"]
        assert deps["channel_emulator"]["condition"] == deps["control_panel"]["condition"] == "service_healthy"


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


def mounts(svc: dict) -> list[tuple[str, str]]:
    return [(v["source"], v["target"]) if isinstance(v, dict) else tuple(v.split(":")[:2]) for v in svc["volumes"]]


def test_no_transmitter_checkpoint_in_black_box_eavesdroppers():
    from diffsem.bundle import EAVESDROPPER_PARTS

    services = resolved()["services"]
    tx_ckpt = set(volume_sources(services["transmitter"]))
    assert tx_ckpt and tx_ckpt == set(volume_sources(services["receiver"]))
    (tx_dir,) = tx_ckpt
    allowed = {"bundle.json", "attacks"} | {f"{p}{s}" for p in EAVESDROPPER_PARTS for s in (".safetensors", ".json")}
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
    assert "/srv/data" in volume_sources(custom["control_panel"])
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
    tx = services["transmitter"]
    assert tx["command"][tx["command"].index("--self-noise") + 1] == "keyed"
    for name in ("transmitter", "receiver"):
        assert services[name]["environment"]["DIFFSEM_SELF_NOISE_KEY"] == key, name
    for name, svc in services.items():
        if name not in ("transmitter", "receiver"):
            assert "DIFFSEM_SELF_NOISE_KEY" not in (svc.get("environment") or {}), name
            assert key not in str(svc), name


def test_commented_own_attack_example_is_valid(tmp_path: Path):
    """Uncommenting the `eve-mine` example gives a valid service that mounts only the eavesdropper files."""
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  # eve-mine:"))
    block = [line.replace("  # ", "  ", 1) for line in lines[start:] if line.startswith("  # ")]
    # the example is the file's last block, inside `services:`, so appending it uncommented adds one service
    text = (ROOT / "docker-compose.yml").read_text() + "\n" + "\n".join(block) + "\n"
    (tmp_path / "docker-compose.yml").write_text(text)
    out = subprocess.run([COMPOSE, "-f", str(tmp_path / "docker-compose.yml"), "config"], cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if not k.startswith(("DIFFSEM_", "COMPOSE_"))},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    svc = yaml.safe_load(out.stdout)["services"]["eve-mine"]
    assert svc["profiles"] == ["mine"] and "my-attack" in svc["command"]
    assert mounts(svc) == mounts(yaml.safe_load(out.stdout)["services"]["eve-inversion"])
