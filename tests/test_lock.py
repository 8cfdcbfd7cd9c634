"""The lock (requirements.lock and requirements-dev.lock, written by scripts/lock) matches pyproject.toml, and the
venv is exactly the lock.

pyproject.toml keeps ranges for people who install the package into their own environment; the lock pins what the
venv (requirements-dev.lock) and the image (requirements.lock) install, each file by its hash. pip-compile
annotates each pin with why it is there ("via diffsem (pyproject.toml)" for our own requirements), so a requirement
that pyproject.toml dropped is still visible in a stale lock even when something else needs the package.
"""

from __future__ import annotations

import json
import re
import shutil
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REFRESH = "scripts/lock"
RUNTIME, DEV = "requirements.lock", "requirements-dev.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
FROM_PYPROJECT = re.compile(r"\(pyproject\.toml(::build-system\.requires)?\)")


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: int
    ours: bool  # pip-compile says pyproject.toml asks for it


def read_lock(text: str) -> dict[str, Pin]:
    """The pins of a pip-compile output, by canonical name."""
    pins: dict[str, Pin] = {}
    name = version = None
    hashes, ours = 0, False
    for line in [*text.splitlines(), ""]:
        match = PIN.match(line)
        if match or not line.strip():
            if name:
                pins[name] = Pin(version, hashes, ours)
            name, version, hashes, ours = None, None, 0, False
        if match:
            name, version = canonicalize_name(match[1]), match[2]
        if name:
            hashes += line.count("--hash=sha256:")
            ours = ours or bool(line.lstrip().startswith("#") and FROM_PYPROJECT.search(line))
    return pins


def wanted(pyproject: dict, extras: bool) -> dict[str, Requirement]:
    """pyproject.toml's requirements that apply here: runtime and build, plus every extra when ``extras``."""
    reqs = [*pyproject["project"]["dependencies"], *pyproject["build-system"]["requires"]]
    if extras:
        reqs += [r for group in pyproject["project"].get("optional-dependencies", {}).values() for r in group]
    out = {}
    for text in reqs:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out[canonicalize_name(req.name)] = req
    return out


def lock_problems(root: Path) -> list[str]:
    """Every way the lock files under ``root`` disagree with its pyproject.toml (and with each other)."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    problems = []
    locks = {}
    for path, extras in ((RUNTIME, False), (DEV, True)):
        pins = locks[path] = read_lock((root / path).read_text())
        want = wanted(pyproject, extras)
        for name, req in want.items():
            if name not in pins:
                problems.append(f"{path}: pyproject.toml asks for {req}, the lock has no {name}")
            elif not req.specifier.contains(Version(pins[name].version), prereleases=True):
                problems.append(f"{path}: pyproject.toml asks for {req}, the lock has {name}=={pins[name].version}")
        for name, pin in pins.items():
            if pin.ours and name not in want:
                problems.append(f"{path}: {name}=={pin.version} is there for pyproject.toml, which no longer asks for it")
            if not pin.hashes:
                problems.append(f"{path}: {name}=={pin.version} has no hash")
    for name, pin in locks[RUNTIME].items():
        dev = locks[DEV].get(name)
        if dev is None or dev.version != pin.version:
            problems.append(f"{DEV} has {name}=={dev.version if dev else '(none)'}, {RUNTIME} has {pin.version}")
    return problems


def lock_report(root: Path) -> str:
    problems = lock_problems(root)
    return "" if not problems else (
        "the lock does not match pyproject.toml:\n  " + "\n  ".join(problems) + f"\nRefresh it with: {REFRESH}")


def test_the_lock_matches_pyproject() -> None:
    assert lock_report(ROOT) == ""


def _copy_locks(to: Path) -> None:
    for name in (RUNTIME, DEV):
        shutil.copy(ROOT / name, to / name)


def test_a_lock_that_does_not_match_pyproject_fails_naming_the_refresh_command(tmp_path: Path) -> None:
    _copy_locks(tmp_path)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert lock_report(_with(tmp_path, pyproject)) == ""  # the copy itself matches
    # added; removed (numpy stays in the lock for torch, but no longer for us); a range the lock does not satisfy;
    # an extra's requirement (the venv's lock only)
    edited = (pyproject.replace('"numpy>=1.26",\n', '"tomli-w>=1.0",\n')
              .replace('"pillow>=10"', '"pillow>=99"')
              .replace('"pytest>=8"', '"pytest>=8", "mypy>=1"'))
    report = lock_report(_with(tmp_path, edited))
    assert report.endswith("Refresh it with: scripts/lock"), report
    for says in ("requirements.lock: pyproject.toml asks for tomli-w>=1.0, the lock has no tomli-w",
                 "requirements-dev.lock: pyproject.toml asks for tomli-w>=1.0, the lock has no tomli-w",
                 "requirements.lock: numpy==2.4.6 is there for pyproject.toml, which no longer asks for it",
                 "requirements.lock: pyproject.toml asks for pillow>=99, the lock has pillow==",
                 "requirements-dev.lock: pyproject.toml asks for mypy>=1, the lock has no mypy"):
        assert says in report, report
    assert "requirements.lock: pyproject.toml asks for mypy" not in report  # the image's lock holds no extras


def test_the_two_locks_agree_on_every_shared_version(tmp_path: Path) -> None:
    _copy_locks(tmp_path)
    dev = tmp_path / DEV
    dev.write_text(re.sub(r"(?m)^pillow==\S+", "pillow==1.0", dev.read_text()))
    report = lock_report(_with(tmp_path, (ROOT / "pyproject.toml").read_text()))
    assert f"{DEV} has pillow==1.0, {RUNTIME} has" in report and "Refresh it with: scripts/lock" in report


def _from_this_checkout(dist: metadata.Distribution) -> bool:
    """Installed from a folder of this checkout: the project, or the example plugin that a service test installs."""
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    return url.startswith("file://") and Path(unquote(url.removeprefix("file://"))).resolve().is_relative_to(ROOT)


def test_the_venv_holds_exactly_the_lock() -> None:
    """scripts/setup installs requirements-dev.lock and nothing else (this checkout's own packages aside)."""
    pins = read_lock((ROOT / DEV).read_text())
    site = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})  # not the checkout's own egg-info
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions(path=site)
                 if not _from_this_checkout(d)}
    missing = {n: p.version for n, p in pins.items() if installed.get(n) != p.version}
    extra = {n: v for n, v in installed.items() if n not in pins}
    assert not missing and not extra, (
        f"the venv is not {DEV}: locked but not installed at that version {missing}, installed but not locked "
        f"{extra}; run scripts/setup")


def _with(root: Path, pyproject: str) -> Path:
    (root / "pyproject.toml").write_text(pyproject)
    return root
