"""The physical layer on Sionna: ``flat`` (the paper's block fading) and ``ofdm`` (3GPP TDL/CDL over a resource grid).

Sionna is imported only inside this package, and only by :mod:`diffsem.phy.blocks`, :mod:`diffsem.phy.flat` and
:mod:`diffsem.phy.ofdm` (about 3.5 s on first import) and, when a multi-antenna link first draws, by
:mod:`diffsem.phy.antennas`, so ``import diffsem.phy``, :mod:`diffsem.phy.grid` and :mod:`diffsem.phy.nullspace`
stay light: a validator can call :func:`check_link` without loading Sionna. The math is docs/design.md §3.

Multi-antenna links (docs/design.md §3, multi-antenna links and null-space self-noise) are their own blocks for now:
``antennas.AntennaConfig`` and ``antennas.MimoLink`` (``draw``, ``feedback``, ``carry``: Rayleigh or CDL, LS and
delayed CSI), ``nullspace`` (beam, power split, null-space self-noise, LMMSE combining), driven by
:func:`diffsem.antenna_path.send_antennas`.

API (what the offline evaluator and the live services call)
----------------------------------------------------------
Settings: :class:`diffsem.config.LinkConfig` (``phy``, ``channel_model``, ``delay_spread_ns``, ``carrier_ghz``,
``speed_kmh``, ``fft_size``, ``subcarrier_spacing_khz``, ``ofdm_symbols``, ``pilot_symbols``, ``estimator``,
``feedback``, ``subband_size``, ``feedback_delay``), validated field by field with one-line ``ConfigError``s.

- ``check_link(link: LinkConfig, k: int) -> None``: the cross-field check (grid capacity for k/2 symbols with its
  pilots, subband width); raises ``ConfigError`` naming the data REs the grid has and how many the frame needs.
- ``make_link(link: LinkConfig, generator: torch.Generator, k: int) -> LinkConfig | OfdmLink``: a link as the frame
  path takes it: a flat ``LinkConfig`` as is (stateless, carried with the role's generator), an ``ofdm`` one as an
  :class:`~diffsem.phy.ofdm.OfdmLink` owning ``generator`` (stateful: its channel continues across calls).
- ``OfdmLink`` (per link; call in frame order):
  - ``draw(n, snr_db=None) -> OfdmDraw``: the channel of the next n frames (h (n, S, F) complex64, n0, csi
    (n, k/2) expected N0 (1 + e)/|H|^2 per carried RE); advances the link's clock (frame i starts at i x ``frame_seconds``).
  - ``carry(x (B, k), draw) -> ChannelOutput``: latent (B, k), sigma_c2 (B, k) (LMMSE no_eff per RE, both reals of a
    symbol), gain (B,) mean H, erased (B, k), csi (B, k/2).
  - ``feedback(draw) -> CsiFeedback``: the transmitter's CSI for those frames (frame i gets frame i - delay),
    grouped per RE / subband / frame and quantised (uint8 codes, 0.5 dB steps).
  - ``latest_feedback(snr_db=None) -> CsiFeedback``: (1, U) feedback for the next frame, without advancing the clock
    (live: what the emulator hands the transmitter before it sends).
  - ``units`` (k/2,) int64, ``n_units``, ``layout`` (:class:`~diffsem.phy.grid.GridLayout`), ``frame_seconds``.
- ``OfdmDraw.subcarrier_snr_db() -> (n, F)``: per-subcarrier SNR of each frame in dB (the dashboard's heat strip).
- ``CsiFeedback(codes (B, U) uint8, units (k/2,) int64)``, ``.sigma_c2() -> (B, k)``, ``.symbol_codes() -> (B, k/2)``,
  ``CsiFeedback.per_symbol(codes)``; ``quantise_csi`` /
  ``dequantise_csi`` map sigma^2 <-> codes (:mod:`diffsem.phy.grid`).
- The frame path takes these as links: ``diffsem.framepath.send(..., links={name: LinkConfig | OfdmLink | None},
  policy=...)``, ``transmit(s, t_star, abar, CsiFeedback | sigma_c2, gen, keyed)``, ``carry(x, link, gen,
  gain=None, draw=None)``, ``view(out, header, keyed, key, policy)``.
- Header: ``diffsem.pipeline.PublicHeader(t_star, a, sigma_self2, csi)``; on an ofdm link sigma_self2 is (B, k) and
  derived from ``csi``, so the wire carries t*, a and the codes (U bytes per frame; U = k/2 per RE, ceil(F /
  subband_size) per subband, 1 per frame) and a listener rebuilds it with ``header_from_csi(t_star, a, csi)``.
- Listener deep-fade policies: ``diffsem.pipeline.DEEP_FADE_POLICIES`` (``mean``, ``erase``, ``min``).
- ``load()``: import Sionna now (the channel emulator calls it at start-up, so no frame waits ~3.5 s for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from diffsem.config import LinkConfig
from diffsem.phy.grid import CsiFeedback, GridLayout, check_link, dequantise_csi, quantise_csi

if TYPE_CHECKING:
    from diffsem.phy.ofdm import OfdmDraw, OfdmLink

__all__ = ["CsiFeedback", "GridLayout", "OfdmDraw", "OfdmLink", "check_link", "dequantise_csi", "load", "make_link",
           "quantise_csi"]


def make_link(link: LinkConfig, generator: torch.Generator, k: int) -> LinkConfig | OfdmLink:
    """A link for the frame path: a flat ``link`` as is, an ``ofdm`` one as an :class:`OfdmLink` owning
    ``generator`` (it draws one seed from it for its channel process, then its noise). Raises ``ConfigError``
    when the link cannot carry a frame of ``k`` real values."""
    check_link(link, k)
    if link.phy == "flat":
        return link
    from diffsem.phy.ofdm import OfdmLink

    return OfdmLink(link, generator, k)


def load() -> None:
    """Import the Sionna-backed modules now (about 3.5 s on a cold start), e.g. when a service starts, so that the
    first frame a link carries does not pay for it."""
    from diffsem.phy import flat, ofdm  # noqa: F401


def __getattr__(name: str) -> object:
    if name in ("OfdmLink", "OfdmDraw"):  # lazily: importing them imports Sionna
        from diffsem.phy import ofdm

        return getattr(ofdm, name)
    raise AttributeError(name)
