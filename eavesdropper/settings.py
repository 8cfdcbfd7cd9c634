"""The eavesdropper's settings spec: its options, the launcher's argv and its environment variables.

An eavesdropper verifies its callers with ``--auth-pins-file`` (the control credential's fingerprint), never with
the authority key, which would let it mint the receiver's credential.
"""

from __future__ import annotations

from pathlib import Path

from services_common.spec import DEFAULT_PORTS, LISTENER_OPTIONS, Option, ServiceSpec, model_options, server_options

SPEC = ServiceSpec("eavesdropper", "Run one eavesdropper (a name, an attack, its own link).", (
    *server_options(DEFAULT_PORTS["eavesdropper"]),
    *LISTENER_OPTIONS,
    *model_options("folder with bundle.json, the eavesdropper and judge parts, and attacks/ (the transmitter's "
                   "encoder is not read from it)"),
    Option("--name", "this eavesdropper's link name (= its credential's name)", "eve"),
    Option("--attack", "attack name (--list-attacks)", "feature-classifier"),
    Option("--list-attacks", "print the known attacks and exit", kind="flag"),
    Option("--attack-checkpoint", "trained attack weights (default: <checkpoints>/attacks/<attack>.safetensors)",
           None, Path),
    Option("--transmitter-checkpoint", "enables whitebox-inversion: the transmitter checkpoint folder whose encoder "
                                       "it reads", None, Path),
    Option("--judges", "comma-separated panel of judges for reconstructions (default: cnn and every judge under "
                       "<checkpoints>/judges, plus the attack's adapted judge when it has one)", None),
    Option("--snr-offset-db", "when this link is created: follow the legitimate SNR plus this offset (dB)", None,
           float),
    Option("--snr-db", "when this link is created: its SNR (dB)", None, float),
    Option("--threads", "torch CPU threads", 1, int),
))
