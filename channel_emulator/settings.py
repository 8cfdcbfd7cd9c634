"""The channel emulator's settings spec: its options, the launcher's argv and its environment variables."""

from __future__ import annotations

from pathlib import Path

from services_common.spec import Option, ServiceSpec, server_options

SPEC = ServiceSpec("channel_emulator", "Run the channel emulator service.", (
    *server_options(50052),
    Option("--seed", "base seed; each link's noise is seeded from it and its name", 0, int),
    Option("--legit-name", "name of the legitimate link (= the receiver credential's name)", "receiver"),
    Option("--snr-db", "legitimate link SNR (dB)", 10.0, float),
    Option("--fading", "fading of every link", "none", choices=("none", "rayleigh", "rician")),
    Option("--eve-snr-db", "SNR (dB) of a new eavesdropper link", 10.0, float),
    Option("--queue-size", "per-listener queue bound (frames)", 4096, int),
    Option("--max-links", "most links at once; past it Listen answers RESOURCE_EXHAUSTED", 1024, int),
    Option("--link-grace-s", "a link without a listener is removed after this many seconds", 300.0, float),
    Option("--trace-dir", "folder of SNR trace files that SnrTrace.name may name (none: names are refused)", None,
           Path),
    Option("--trace", "SNR trace file for a link (JSON or CSV, see channel_emulator/traces.py)", kind="append",
           metavar="LINK=FILE"),
    Option("--k", "real values per frame, which an ofdm link's grid must carry", 256, int),
    Option("--phy", "physical layer of the legitimate link and of new eavesdropper links", "flat",
           choices=("flat", "ofdm")),
    Option("--channel-model", "ofdm: 3GPP model, TDL-A..E or CDL-A..E", "TDL-A"),
    Option("--delay-spread-ns", "ofdm: RMS delay spread (ns)", 100.0, float),
    Option("--speed-kmh", "ofdm: UE speed (km/h), sets the Doppler", 3.0, float),
    Option("--estimator", "ofdm: channel estimation, from pilots or perfect", "ls", choices=("ls", "perfect")),
    Option("--feedback", "ofdm: CSI feedback per RE, per subband or per frame", "re",
           choices=("re", "subband", "frame")),
    Option("--feedback-delay", "ofdm: frames between a CSI measurement and the frame it shapes", 1, int),
    Option("--threads", "torch CPU threads", 1, int),
))
