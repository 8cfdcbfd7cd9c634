"""The physical layer on Sionna: ``flat`` (the paper's block fading) and ``ofdm`` (3GPP TDL/CDL over a resource grid),
behind one :class:`Link` per listener.

Sionna is imported only inside this package, and only by :mod:`diffsem.phy.blocks`, :mod:`diffsem.phy.flat` and
:mod:`diffsem.phy.ofdm` (about 3.5 s on first import) and, when a multi-antenna link first draws, by
:mod:`diffsem.phy.antennas`, so ``import diffsem.phy``, :mod:`diffsem.phy.link`, :mod:`diffsem.phy.grid` and
:mod:`diffsem.phy.nullspace` stay light: a validator can build a link's settings and call :func:`check_link` without
loading Sionna, and a :class:`Link` loads it when it first draws. The math is docs/design.md §3.

Multi-antenna links (docs/design.md §3, multi-antenna links and null-space self-noise) are their own blocks until
they are wired into :class:`Link`: ``antennas.AntennaConfig`` and ``antennas.MimoLink`` (``draw``, ``feedback``,
``carry``: Rayleigh or CDL, LS and delayed CSI), ``nullspace`` (beam, power split, null-space self-noise, LMMSE
combining), driven offline by :func:`diffsem.antenna_path.send_antennas`.

API (what the offline evaluator, the benchmarks and the live services call)
---------------------------------------------------------------------------
Settings: :class:`diffsem.config.LinkConfig`, every setting of a link with its default and bound, validated field
by field with one-line ``ConfigError``s (``OutOfRangeError`` for a value outside its bound).

- ``Link(cfg: LinkConfig, k: int)`` (:mod:`diffsem.phy.link`), one per listener, on every PHY:
  - ``feedback(n, snr_db=None) -> LinkCsi``: draws the channel of the next n frames now and returns the
    transmitter's CSI of them: ``sigma_c2`` (n,) float32 N0/|h|^2 per frame (flat) or a ``CsiFeedback`` (ofdm:
    delayed, grouped per RE / subband / frame and quantised), and the flat gains ``gain`` (n,);
  - ``carry(x (B, k), snr_db=None) -> ChannelOutput``: x over the next B frames, those drawn by ``feedback``
    first: latent (B, k), sigma_c2 ((B,) flat, (B, k) ofdm: LMMSE no_eff per RE), gain (B,), erased (B, k), csi and
    subcarrier_snr_db (ofdm), lost and delay_s (live delivery);
  - ``update(cfg, restart=False)``: new settings (a new seed restarts the generators, a new channel is drawn
    when the channel settings change).
- ``carry(x, link | None)``: a link's carry, or a noiseless tap for None.
- ``check_link(link: LinkConfig, k: int) -> None``: the cross-field check (grid capacity for k/2 symbols with its
  pilots, subband width); raises ``ConfigError`` naming the data REs the grid has and how many the frame needs.
- The PHY blocks a Link runs: :class:`~diffsem.phy.flat.FlatPhy` and :class:`~diffsem.phy.ofdm.OfdmPhy`, each with
  ``draw(n, n0)`` (the channel of the next n frames) and ``carry(x, draw)``; ofdm's ``feedback(draw)``.
- ``OfdmDraw.subcarrier_snr_db() -> (n, F)``: per-subcarrier SNR of each frame in dB (the dashboard's heat strip).
- ``CsiFeedback(codes (B, U) uint8, units (k/2,) int64)``, ``.sigma_c2() -> (B, k)``, ``.symbol_codes() -> (B, k/2)``,
  ``CsiFeedback.per_symbol(codes)``; ``quantise_csi`` / ``dequantise_csi`` map sigma^2 <-> codes
  (:mod:`diffsem.phy.grid`).
- The frame path takes links: ``diffsem.framepath.send(..., links={name: Link | None}, policy=...)``,
  ``transmit(s, t_star, abar, CsiFeedback | sigma_c2, gen, keyed)``, ``view(out, header, keyed, key, policy)``.
- Header: ``diffsem.pipeline.PublicHeader(t_star, a, sigma_self2, csi)``; on an ofdm link sigma_self2 is (B, k) and
  derived from ``csi``, so the wire carries t*, a and the codes (U bytes per frame; U = k/2 per RE, ceil(F /
  subband_size) per subband, 1 per frame) and a listener rebuilds it with ``header_from_csi(t_star, a, csi)``.
- Listener deep-fade policies: ``diffsem.pipeline.DEEP_FADE_POLICIES`` (``mean``, ``erase``, ``min``).
- ``load()``: import Sionna now (the channel emulator calls it at start-up, so no frame waits ~3.5 s for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from diffsem.phy.grid import CsiFeedback, GridLayout, check_link, dequantise_csi, quantise_csi
from diffsem.phy.link import Link, LinkCsi, carry

if TYPE_CHECKING:
    from diffsem.phy.ofdm import OfdmDraw

__all__ = ["CsiFeedback", "GridLayout", "Link", "LinkCsi", "OfdmDraw", "carry", "check_link", "dequantise_csi", "load",
           "quantise_csi"]


def load() -> None:
    """Import the Sionna-backed modules now (about 3.5 s on a cold start), e.g. when a service starts, so that the
    first frame a link carries does not pay for it."""
    from diffsem.phy import flat, ofdm  # noqa: F401


def __getattr__(name: str) -> object:
    if name == "OfdmDraw":  # lazily: importing it imports Sionna
        from diffsem.phy import ofdm

        return ofdm.OfdmDraw
    raise AttributeError(name)
