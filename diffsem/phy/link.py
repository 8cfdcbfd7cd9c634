"""One listener's link, the one object offline and live both drive (docs/design.md §3, the link).

A :class:`Link` owns its settings (:class:`~diffsem.config.LinkConfig`), its generators and its channel's clock, and
speaks one protocol on every PHY:

    feedback(n)  ->  the transmitter's CSI of the link's next n frames, whose channel is drawn now and kept
    carry(x)     ->  x (B, k) over the link's next B frames: those drawn ahead first (so feedback(B) then carry(B)
                     shapes the self-noise for exactly the channel the frames meet), then fresh draws

The offline frame path (:func:`diffsem.framepath.send`) calls both for a batch in one go; live, the transmitter's
``Feedback`` call and its ``Send`` split them across processes, and the emulator calls the same methods, so a
seeded live run draws what the evaluator draws, draw for draw. A listener that asks for no feedback (an
eavesdropper) is carried over fresh draws. Frames drawn ahead but never carried (a request that failed after asking)
are skipped by the next ``feedback``: the link's clock has moved past them.

Generators, all seeded from ``cfg.seed`` so that a seed gives bit-identical draws on any host:

- ``noise``: the per-frame fading gains (flat, coherence 1), the channel noise and the erasures, in that order; an
  ofdm link first draws its channel process's seed from it (docs/design.md §3, frame path);
- ``fade``: the gains of flat coherence blocks longer than one frame;
- ``aux``: frame loss and delay jitter (the emulator's delivery), so loss and delay settings never shift the noise.

Every batch is drawn whole whether or not its listener keeps up, so a link's random draws do not depend on its
listener. Nothing here knows of processes or the wire: a link can live in any process that is handed its settings.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from diffsem.channel import ChannelOutput, noise_variance, tap
from diffsem.config import LinkConfig
from diffsem.errors import ConfigError
from diffsem.phy.grid import CsiFeedback, check_link
from diffsem.seeds import derive_seed

if TYPE_CHECKING:  # importing them imports Sionna (about 3.5 s); a Link imports them when it first draws
    from diffsem.phy.flat import FlatDraw
    from diffsem.phy.ofdm import OfdmDraw

    Draw = FlatDraw | OfdmDraw


class _Phy(Protocol):
    def draw(self, n: int, n0: float) -> Draw: ...

    def carry(self, x: torch.Tensor, draw: Draw) -> ChannelOutput: ...


@dataclass
class LinkCsi:
    """What the transmitter knows of a link's next n frames (docs/design.md §3, self-noise and per-RE self-noise).

    sigma_c2: what the self-noise is shaped for: (n,) float32 N0 / |h|^2 per real dim of each frame on a flat link,
        or the per-RE :class:`~diffsem.phy.grid.CsiFeedback` (codes (n, U)) of an ofdm link, delayed and quantised.
    gain: flat only, (n,) complex64: the gains h those levels come from (the channel a precoder would use); None on
        an ofdm link, whose per-RE channel stays at the link.
    """

    sigma_c2: torch.Tensor | CsiFeedback
    gain: torch.Tensor | None = None

    def mean(self) -> float:
        """The mean fed-back noise level per real dim (what a state query reports)."""
        s2 = self.sigma_c2.sigma_c2() if isinstance(self.sigma_c2, CsiFeedback) else self.sigma_c2
        return float(s2.double().mean())


class Link:
    """One listener's link: its settings, generators and channel clock, with the ``feedback(n)`` / ``carry(x)``
    protocol of this module.

    Parameters
    ----------
    cfg : LinkConfig
        Every setting of the link; ``cfg.seed`` must be set (the operator gives it, or the process that makes the link
        draws or derives it).
    k : int
        Real values per frame (an ofdm grid must carry k/2 symbols: :func:`diffsem.phy.check_link`).

    Raises ``ConfigError`` when ``cfg`` has no seed or cannot carry frames of ``k`` values.
    """

    def __init__(self, cfg: LinkConfig, k: int):
        check_link(cfg, k)
        self.k = k
        self.cfg = cfg
        self.ahead: deque[Draw] = deque()  # drawn for feedback, not carried yet; oldest first
        self._restart()

    def _restart(self) -> None:
        if self.cfg.seed is None:
            raise ConfigError("a link needs a seed (LinkConfig.seed): the operator gives it or the process draws it")
        seed = self.cfg.seed
        self.noise = torch.Generator().manual_seed(seed)
        self.fade = torch.Generator().manual_seed(derive_seed(seed, "fade"))
        self.aux = torch.Generator().manual_seed(derive_seed(seed, "aux"))
        self._phy: _Phy | None = None
        self.ahead.clear()

    def update(self, cfg: LinkConfig, restart: bool = False) -> None:
        """New settings. A new seed (or ``restart``) restarts every generator; new channel settings
        (:meth:`LinkConfig.channel`) draw a new channel from the running noise generator (ofdm: a new channel process;
        flat: a new coherence block); an SNR or delivery change keeps the channel. Drawn-ahead frames of an old
        channel are dropped."""
        check_link(cfg, self.k)
        old, self.cfg = self.cfg, cfg
        if restart or cfg.seed != old.seed:
            self._restart()
        elif cfg.channel() != old.channel():
            self._phy = None
            self.ahead.clear()

    @property
    def phy(self) -> _Phy:
        """The link's channel (made on first use, from the noise generator: an ofdm link draws its channel seed)."""
        if self._phy is None:
            if self.cfg.phy == "ofdm":
                from diffsem.phy.ofdm import OfdmPhy

                self._phy = OfdmPhy(self.cfg, self.noise, self.k)
            else:
                from diffsem.phy.flat import FlatPhy

                self._phy = FlatPhy(self.cfg, self.noise, self.fade)
        return self._phy

    def _draw(self, n: int, snr_db: float | None) -> Draw:
        return self.phy.draw(n, float(noise_variance(self.cfg.snr_db if snr_db is None else snr_db)))

    def feedback(self, n: int, snr_db: float | None = None) -> LinkCsi:
        """Draw the channel of the next ``n`` frames now and return the transmitter's CSI of it.

        Input: n, frames; snr_db, this batch's SNR (default ``cfg.snr_db``; the emulator's traces and offsets set
        it). Output: :class:`LinkCsi` of n frames. The next :meth:`carry` goes over exactly these frames; frames drawn
        by an earlier ``feedback`` and never carried are skipped."""
        self.ahead.clear()
        draw = self._draw(n, snr_db)
        self.ahead.append(draw)
        if self.cfg.phy == "ofdm":
            return LinkCsi(self.phy.feedback(draw))  # type: ignore[attr-defined]
        return LinkCsi(draw.sigma_c2(), draw.h)  # type: ignore[union-attr]

    def _take(self, n: int, snr_db: float | None) -> list[Draw]:
        """The channel of the next ``n`` frames to carry: drawn-ahead pieces first, then one fresh draw."""
        pieces, left = [], n
        while left and self.ahead:
            d = self.ahead.popleft()
            if len(d) > left:  # split: the rest stays ahead
                self.ahead.appendleft(d.frames(left, len(d)))
                d = d.frames(0, left)
            pieces.append(d)
            left -= len(d)
        if left:
            pieces.append(self._draw(left, snr_db))
        return pieces

    def carry(self, x: torch.Tensor, snr_db: float | None = None) -> ChannelOutput:
        """Send frames over the link's next frames of channel.

        Input: x (B, k) float32, at most unit power per real dim; snr_db, the SNR of frames drawn now (default
        ``cfg.snr_db``; frames drawn ahead keep the SNR they were drawn at).
        Output: :class:`~diffsem.channel.ChannelOutput` with latent (B, k), sigma_c2 ((B,) flat, (B, k) ofdm), gain
        (B,), erased (B, k), csi and subcarrier_snr_db (ofdm), lost (B,) and delay_s (B,) (the live delivery)."""
        if self.cfg.phy == "ofdm" and x.shape[1] != self.k:  # a flat link carries frames of any even size
            raise ConfigError(f"frames of {x.shape[1]} real values; this ofdm link's grid carries k={self.k}")
        outs, i = [], 0
        for d in self._take(x.shape[0], snr_db):
            outs.append(self.phy.carry(x[i:i + len(d)], d))
            i += len(d)
        out = ChannelOutput.cat(outs)
        out.lost, out.delay_s = self.delivery(x.shape[0])
        return out

    def delivery(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame loss (B,) bool and delivery delay (B,) float64 seconds of ``b`` frames, from ``aux`` (the emulator
        calls it for frames it carries over a multi-antenna link)."""
        lost = torch.zeros(b, dtype=torch.bool)
        if self.cfg.loss_prob > 0:
            lost = torch.rand(b, generator=self.aux) < self.cfg.loss_prob
        delay = torch.full((b,), self.cfg.delay_ms / 1000.0, dtype=torch.float64)
        if self.cfg.jitter_ms > 0:
            delay += torch.rand(b, generator=self.aux, dtype=torch.float64) * self.cfg.jitter_ms / 1000.0
        return lost, delay


def carry(x: torch.Tensor, link: Link | None) -> ChannelOutput:
    """x (B, k) over ``link``, or through a noiseless tap when it is None (:func:`diffsem.channel.tap`)."""
    return tap(x) if link is None else link.carry(x)
