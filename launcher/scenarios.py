"""Scenario presets (``python -m launcher --scenario NAME``, ``scripts/demo --scenario NAME``): where privacy comes
from, one setting at a time, so that a new user sees it on the dashboard within a minute.

Each preset is launcher arguments put before the user's own (a flag given on the command line wins); its
eavesdroppers are used only when the command line names none. Every preset runs the legitimate link at 20 dB:

- ``equal-snr``: DiffSem's random self-noise (t* = 300) against an eavesdropper at the receiver's SNR: no gap (the
  paper's setting; docs/results/mnist-attacks).
- ``snr-advantage``: the same with the eavesdropper 10 dB worse off: the gap comes from the channel.
- ``keyed``: keyed self-noise at t* = 700: the gap comes from a secret shared in advance (docs/results/mnist-keyed).
- ``antennas``: 4 transmit antennas, 1% of the power on the beam, the rest as self-noise in the null space of the
  legitimate channel: the gap comes from the antennas, with no key and at equal SNR (docs/results/mnist-antennas:
  97.4% against 28.9%). Its limit: add ``-e eve:feature-classifier:0 -e eve-4rx:feature-classifier:0:4``, an
  eavesdropper with as many antennas as the transmitter, which cancels the null-space self-noise (+9.3 points).
"""

from __future__ import annotations

ENV = "DIFFSEM_SCENARIO"  # the launcher's default scenario, from its environment

SCENARIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name: (launcher arguments, eavesdroppers as -e values)
    "equal-snr": (("--snr-db", "20", "--t-star", "300"), ("eve:feature-classifier:0",)),
    "snr-advantage": (("--snr-db", "20", "--t-star", "300"), ("far-eve:feature-classifier:-10",)),
    "keyed": (("--snr-db", "20", "--t-star", "700", "--self-noise", "keyed"), ("eve:feature-classifier:0",)),
    "antennas": (("--snr-db", "20", "--t-star", "300", "--n-tx", "4", "--null-space", "--beam-fraction", "0.01"),
                 ("eve:feature-classifier:0",)),
}


def expand(argv: list[str], default: str | None = None) -> list[str]:
    """``argv`` with its ``--scenario NAME`` (or ``default``, e.g. from $DIFFSEM_SCENARIO) replaced by the preset's
    arguments, put first so the command line's own flags win. ValueError naming the scenarios for an unknown one."""
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
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; use one of {', '.join(SCENARIOS)}")
    args, eves = SCENARIOS[name]
    named = any(a in ("-e", "--eavesdropper") or a.startswith("--eavesdropper=") for a in argv)
    return [*args, *([] if named else [x for e in eves for x in ("-e", e)]), *argv]
