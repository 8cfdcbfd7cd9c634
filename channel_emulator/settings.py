"""The channel emulator's settings spec: its options, the launcher's argv and its environment variables. The link
options (meaning, default, bound) are the core's :class:`diffsem.config.LinkConfig` fields."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from diffsem.config import ARRAY_MODELS, PHY_FIELDS
from diffsem.phy.antennas import AntennaConfig
from diffsem.phy.nullspace import NullSpaceConfig
from services_common.spec import DEFAULT_PORTS, Option, ServiceSpec, link_options, server_options

SPEC = ServiceSpec("channel_emulator", "Run the channel emulator service.", (
    *server_options(DEFAULT_PORTS["channel_emulator"]),
    Option("--seed", "base seed: each link's noise is seeded from it and its name, reproducible and known to anyone "
                     "who knows it (default: each link's seed drawn from the OS, never exposed)", None, int),
    Option("--legit-name", "name of the legitimate link (= the receiver credential's name)", "receiver"),
    *link_options(["snr_db"], whose="the legitimate link's "),
    replace(link_options(["snr_db"], prefix="eve_", whose="a new eavesdropper link's fixed ")[0], default=None),
    Option("--eve-snr-offset-db", "a new eavesdropper link follows the legitimate SNR plus this offset (dB); default "
                                  "0 (equal SNR), unless --eve-snr-db fixes its SNR instead", None, float),
    Option("--eavesdropper-link", "the operator's SNR offset (dB, from the legitimate SNR; empty: as a new "
                                  "eavesdropper link) and receive antennas of eavesdropper NAME's link (repeatable); "
                                  "listeners never choose their own link", kind="append",
           metavar="NAME=[OFFSET_DB][:N_RX]"),
    # multi-antenna links (docs/design.md §5, live antennas): meanings and bounds are the core's
    Option("--n-tx", AntennaConfig.model_fields["n_tx"].description + "; > 1 makes every link a flat multi-antenna "
           "link", 1, int),
    Option("--antenna-channel", "with --n-tx > 1, every link's " + AntennaConfig.model_fields["channel_model"]
           .description + ", each link its own draw", "rayleigh", choices=ARRAY_MODELS),
    Option("--n-rx", "the legitimate receiver's receive antennas: 1 to 8", 1, int),
    Option("--eve-n-rx", "a new eavesdropper link's receive antennas: 1 to 8", 1, int),
    Option("--null-space", NullSpaceConfig.model_fields["null_space"].description + " (needs --n-tx above --n-rx)",
           kind="flag"),
    Option("--beam-fraction", NullSpaceConfig.model_fields["beam_fraction"].description + "; default 1, or 0.01 with "
           "--null-space", None, float),
    Option("--csi-estimator", "multi-antenna " + AntennaConfig.model_fields["estimator"].description, "perfect",
           choices=("perfect", "ls")),
    Option("--csi-delay", "multi-antenna CSI: " + AntennaConfig.model_fields["feedback_delay"].description, 0, int),
    Option("--csi-speed-kmh", "multi-antenna CSI: " + AntennaConfig.model_fields["speed_kmh"].description, 3.0,
           float),
    Option("--eve-correlation", "a new eavesdropper link's " + AntennaConfig.model_fields["correlation"].description
           .removeprefix("eavesdropper: "), 0.0, float),
    *link_options(["fading", "queue_size"]),  # of every link
    Option("--max-links", "most links at once; past it Listen answers RESOURCE_EXHAUSTED", 1024, int),
    Option("--link-grace-s", "a link without a listener is removed after this many seconds", 300.0, float),
    Option("--trace-dir", "folder of SNR trace files that SnrTrace.name may name (none: names are refused)", None,
           Path),
    Option("--trace", "SNR trace file for a link (JSON or CSV, see channel_emulator/traces.py)", kind="append",
           metavar="LINK=FILE"),
    Option("--k", "real values per frame, which an ofdm link's grid must carry", 256, int),
    *link_options(PHY_FIELDS),  # the legitimate link and new eavesdropper links
    Option("--threads", "torch CPU threads", 1, int),
    Option("--fanout", "where eavesdropper links draw their channel: a worker process (off the legitimate link's "
           "interpreter lock) or a thread of the emulator", "process", choices=("process", "thread")),
))
