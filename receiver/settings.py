"""The receiver's settings spec: its options, the launcher's argv and its environment variables."""

from __future__ import annotations

from pathlib import Path

from diffsem.config import CLASSIFIERS, DECODE_MODES
from diffsem.defaults import KEY_ENV
from services_common.spec import DEFAULT_PORTS, LISTENER_OPTIONS, Option, ServiceSpec, model_options, server_options

SPEC = ServiceSpec("receiver", "Run the legitimate receiver service.", (
    *server_options(DEFAULT_PORTS["receiver"]),
    *LISTENER_OPTIONS,
    *model_options(),
    Option("--name", "the emulator's legitimate link name (= this receiver credential's name)", "receiver"),
    Option("--mode", "decode mode", "selfref", choices=DECODE_MODES),
    Option("--classifier", "matched: noise-aware at every level; channel: trained for the channel only (paper "
                           "baseline)", "matched", choices=CLASSIFIERS),
    Option("--steps", "reverse steps per diffusion decode", 1, int),
    Option("--eta", "0 = DDIM, 1 = DDPM-like", 0.0, float),
    Option("--threads", "torch CPU threads (default: torch's choice)", None, int),
    Option("--key-file", f"keyed self-noise secret shared with the transmitter (default: ${KEY_ENV} in hex, if set)",
           None, Path),
))
