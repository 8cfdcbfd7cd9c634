"""Scenario presets: where privacy comes from, one setting at a time, so that a new user sees it on the dashboard
within a minute (issue 22). One table for every way of starting the stack:

- ``python -m launcher --scenario NAME`` / ``scripts/demo --scenario NAME`` turn a preset into launcher flags
  (launcher/scenarios.py);
- ``$DIFFSEM_SCENARIO`` in a service's environment (compose, Kubernetes) makes the preset's settings that service's
  defaults, for the options it has (:meth:`services_common.spec.Option.env_default`). The order is: command line,
  then ``$DIFFSEM_<OPTION>`` (non-empty), then the scenario, then the built-in default.

Settings are by option name (``Option.dest``), written as the environment writes them. Every preset runs the
legitimate link at 20 dB with its eavesdroppers at the same SNR, except where the preset is about the SNR:

- ``equal-snr``: DiffSem's random self-noise (t* = 300) against an eavesdropper at the receiver's SNR: no gap (the
  paper's setting; docs/results/mnist-attacks).
- ``snr-advantage``: the same with the eavesdropper 10 dB worse off: the gap comes from the channel.
- ``keyed``: keyed self-noise at t* = 700: the gap comes from a secret shared in advance (docs/results/mnist-keyed).
  Outside the launcher, which makes a key, the operator supplies ``$DIFFSEM_SELF_NOISE_KEY``.
- ``antennas``: 4 transmit antennas, 1% of the power on the beam, the rest as self-noise in the null space of the
  legitimate channel: the gap comes from the antennas, with no key and at equal SNR (docs/results/mnist-antennas:
  97.4% against 28.9%). Its limit is an eavesdropper with as many antennas as the transmitter, which cancels the
  null-space self-noise (+9.3 points): the launcher's ``-e eve-4rx:feature-classifier:0:4``, compose's
  ``DIFFSEM_EVE_N_RX=4``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV = "DIFFSEM_SCENARIO"


@dataclass(frozen=True)
class Scenario:
    """A preset's settings (option name -> value as text) and the name of the launcher's one eavesdropper, which
    runs the feature classifier at ``eve_snr_offset_db``."""

    settings: Mapping[str, str]
    eavesdropper: str = "eve"


_EQUAL = {"snr_db": "20", "eve_snr_offset_db": "0"}
SCENARIOS: dict[str, Scenario] = {
    "equal-snr": Scenario({**_EQUAL, "t_star": "300"}),
    "snr-advantage": Scenario({**_EQUAL, "t_star": "300", "eve_snr_offset_db": "-10"}, "far-eve"),
    "keyed": Scenario({**_EQUAL, "t_star": "700", "self_noise": "keyed"}),
    "antennas": Scenario({**_EQUAL, "t_star": "300", "n_tx": "4", "null_space": "1", "beam_fraction": "0.01"}),
}


def scenario(name: str) -> Scenario:
    """The preset ``name``; ValueError naming the presets for an unknown one."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; use one of {', '.join(SCENARIOS)}")
    return SCENARIOS[name]


def scenario_setting(dest: str) -> str | None:
    """The value ``$DIFFSEM_SCENARIO``'s preset gives option ``dest`` (None: no scenario, or it does not set it)."""
    name = os.environ.get(ENV, "")
    return scenario(name).settings.get(dest) if name else None
