"""One link's ``ofdm`` physical layer in the emulator: the core's stateful :class:`diffsem.phy.OfdmLink`, the frames
drawn ahead for the transmitter's CSI feedback, and the recent per-subcarrier SNR the dashboard draws.

The maths is the core's (docs/design.md §3, OFDM): :func:`diffsem.phy.make_link` builds the link from the link's
generator, ``draw`` gives a batch's channel, ``feedback`` the transmitter's delayed, quantised CSI of it and
``carry`` passes frames over it. What this module adds is the split across two calls. Offline, one batch is
drawn, fed back and carried in one go (:func:`diffsem.framepath.send`). Live, the transmitter first asks for the
feedback of its next B frames (:meth:`OfdmState.feedback`: the channel of those frames is drawn then and kept),
and its ``Send`` carries them over exactly that channel (:meth:`OfdmState.carry`). One ``Feedback`` of B frames
followed by a ``Send`` of B frames therefore draws what the offline path draws, in the same order. Frames sent
without feedback asked first are drawn when they arrive; drawn-ahead frames that are still unsent when the next
``Feedback`` comes (the transmitter's request failed after asking) are skipped: the link's clock has moved past them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from typing import TYPE_CHECKING

import torch

from diffsem.channel import ChannelOutput
from diffsem.config import LinkConfig
from diffsem.framepath import carry
from diffsem.phy import CsiFeedback, make_link

if TYPE_CHECKING:  # importing it imports Sionna; make_link does that when the first ofdm link is built
    from diffsem.phy.ofdm import OfdmDraw

STRIP_FRAMES = 32  # recent frames kept for the per-subcarrier SNR picture
log = logging.getLogger(__name__)
_warmed: set[str] = set()


def warm_up(phy: str) -> None:
    """Import Sionna and pass two frames over a throwaway ``phy`` link, on a background thread, once per process and
    PHY. A process's first batch otherwise pays Sionna's import and its blocks' first calls (about 3 s for flat, 4 s
    for ofdm) inside a ``Send`` or ``Feedback``, with the event loop starved meanwhile. The emulator starts the flat
    warm-up when it starts and the ofdm one when an ofdm link is configured."""
    if phy in _warmed:
        return
    _warmed.add(phy)

    def run() -> None:
        cfg, x = LinkConfig(phy=phy), torch.zeros(2, 256)
        if phy == "ofdm":
            OfdmState(cfg, torch.Generator().manual_seed(0), 256).carry(x, 10.0)
        else:
            carry(x, cfg, torch.Generator().manual_seed(0))
        log.info("%s PHY warmed up", phy)

    threading.Thread(target=run, name=f"{phy}-warm-up", daemon=True).start()


class OfdmState:
    """The ``ofdm`` side of one emulated link. ``cfg``: the link's core settings (snr_db is per batch, not used);
    ``generator``: the link's own generator (the OfdmLink takes its channel seed from it, then its noise); ``k``:
    real values per frame."""

    def __init__(self, cfg: LinkConfig, generator: torch.Generator, k: int):
        self.cfg, self.k = cfg, k
        self.link = make_link(cfg, generator, k)
        self.ahead: deque[OfdmDraw] = deque()  # drawn for the transmitter's feedback, not sent yet; oldest first
        self.strip: deque[list[float]] = deque(maxlen=STRIP_FRAMES)
        self.last_csi = math.nan  # mean N0 / |H|^2 over the last drawn frame's carried REs

    def same_link(self, cfg: LinkConfig) -> bool:
        """Whether ``cfg`` is this link's channel (only the SNR, which each batch sets, may differ)."""
        return self.cfg.model_copy(update={"snr_db": cfg.snr_db}) == cfg

    def _draw(self, n: int, snr_db: float) -> OfdmDraw:
        draw = self.link.draw(n, snr_db)
        self.strip.extend(draw.subcarrier_snr_db().clamp(-100.0, 100.0).tolist())  # finite for JSON
        self.last_csi = float(draw.csi[-1].mean())
        return draw

    def feedback(self, n: int, snr_db: float) -> CsiFeedback:
        """The transmitter's CSI for the next ``n`` frames (their channel is drawn now and kept for :meth:`carry`)."""
        self.ahead.clear()  # frames drawn for an earlier request and never sent are skipped: the clock moved on
        draw = self._draw(n, snr_db)
        self.ahead.append(draw)
        return self.link.feedback(draw)

    def _take(self, n: int, snr_db: float) -> list[OfdmDraw]:
        """The channel of the next ``n`` frames to carry: drawn-ahead pieces first, then fresh draws."""
        pieces, left = [], n
        while left and self.ahead:
            d = self.ahead.popleft()
            m = d.h.shape[0]
            if m > left:  # split the piece: the rest stays ahead
                self.ahead.appendleft(d.frames(left, m))
                d, m = d.frames(0, left), left
            pieces.append(d)
            left -= m
        if left:
            pieces.append(self._draw(left, snr_db))
        return pieces

    def carry(self, x: torch.Tensor, snr_db: float) -> ChannelOutput:
        """Frames x (B, k) over the link's next B frames of channel."""
        outs, i = [], 0
        for d in self._take(x.shape[0], snr_db):
            m = d.h.shape[0]
            outs.append(self.link.carry(x[i:i + m], d))
            i += m
        return ChannelOutput.cat(outs)

    def snr_picture(self) -> list[float]:
        """The recent frames' SNR per subcarrier in dB, row-major (frames x fft_size), oldest first."""
        return [v for row in self.strip for v in row]

