"""Scenario presets as launcher flags (``python -m launcher --scenario NAME``, ``scripts/demo --scenario NAME``): the
presets themselves, and what each shows, are services_common/scenarios.py.

A preset's settings become launcher flags put before the user's own (a flag given on the command line wins); its
eavesdropper, running the feature classifier at the preset's SNR offset, is used only when the command line names
none.
"""

from __future__ import annotations

from services_common.scenarios import ENV, SCENARIOS, scenario

__all__ = ["ENV", "SCENARIOS", "expand", "preset_argv"]


def preset_argv(name: str) -> list[str]:
    """The launcher flags and ``-e`` eavesdropper of preset ``name`` (ValueError naming the presets if unknown)."""
    preset = scenario(name)
    flags: list[str] = []
    for dest, value in preset.settings.items():
        if dest == "eve_snr_offset_db":  # the launcher's eavesdropper carries it
            continue
        flag = "--" + dest.replace("_", "-")
        flags += [flag] if value == "1" and dest == "null_space" else [flag, value]
    offset = preset.settings.get("eve_snr_offset_db", "0")
    return [*flags, "-e", f"{preset.eavesdropper}:feature-classifier:{offset}"]


def expand(argv: list[str], default: str | None = None) -> list[str]:
    """``argv`` with its ``--scenario NAME`` (or ``default``, e.g. from $DIFFSEM_SCENARIO) replaced by the preset's
    flags, put first so the command line's own flags win. ValueError naming the scenarios for an unknown one."""
    argv = list(argv)
    name = default or None
    for i, a in enumerate(argv):
        if a == "--scenario" or a.startswith("--scenario="):
            value = a.partition("=")[2] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            del argv[i:i + (1 if "=" in a else 2)]
            name = value
            break
    if not name:
        return argv
    preset = preset_argv(name)
    named = any(a in ("-e", "--eavesdropper") or a.startswith("--eavesdropper=") for a in argv)
    return [*(preset[:-2] if named else preset), *argv]
