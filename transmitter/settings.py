"""The transmitter's settings spec: its options, the launcher's argv and its environment variables."""

from __future__ import annotations

from pathlib import Path

from diffsem.defaults import KEY_ENV
from services_common.spec import DEFAULT_PORTS, Option, ServiceSpec, local_address, model_options, server_options

SPEC = ServiceSpec("transmitter", "Run the transmitter service.", (
    *server_options(DEFAULT_PORTS["transmitter"]),
    *model_options(),
    Option("--emulator", "channel emulator address", local_address("channel_emulator")),
    Option("--t-star", "privacy level t* in [0, T)", 300, int),
    Option("--no-self-noise", "send plain frames (a = 1)", kind="flag"),
    Option("--seed", "self-noise generator seed", 0, int),
    Option("--self-noise", f"keyed: eps_self from a secret shared with the receiver (--key-file, else ${KEY_ENV} in "
                           "hex)", "random", choices=("random", "keyed")),
    Option("--key-file", "keyed self-noise secret (raw bytes or hex)", None, Path),
    Option("--legit-link", "the emulator's legitimate link (CSI feedback)", "receiver"),
    Option("--threads", "torch CPU threads", 1, int),
))
