"""The ``flat`` PHY on Sionna: the paper's channel (docs/design.md §3, channel).

A frame's k/2 complex symbols see one block-fading gain h (``GenerateFlatFadingChannel``: Rayleigh CN(0, 1), or
Rician with a line-of-sight part of power K/(K+1)) and AWGN of N0 = 10^(-snr_db/10) per complex symbol (``AWGN``).
The receiver knows h and equalises by zero forcing, so the noise per real latent dim is sigma_c^2 = N0 / |h|^2.

Drawing the channel and applying it are two steps, as Sionna's ``GenerateOFDMChannel`` and ``ApplyOFDMChannel`` are:
:meth:`FlatPhy.draw` gives the gains of the next frames (what the transmitter's CSI is computed from),
:meth:`FlatPhy.carry` passes frames over drawn gains. Draw order from the link's noise generator: the gains (a new
one every frame, ``coherence_frames = 1``), then the noise, then the erasures; gains held over blocks of
``coherence_frames > 1`` frames come from the link's fading generator instead, one draw per block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from sionna.phy.channel import AWGN, GenerateFlatFadingChannel

from diffsem.channel import ChannelOutput, equalised_noise, from_symbols, to_symbols
from diffsem.config import LinkConfig
from diffsem.phy.blocks import seeded


@dataclass
class FlatDraw:
    """The channel of n consecutive frames of a flat link.

    h: (n,) complex64, each frame's gain. n0: float, the AWGN power per complex symbol of these frames."""

    h: torch.Tensor
    n0: float

    def __len__(self) -> int:
        return self.h.shape[0]

    def frames(self, start: int, stop: int) -> FlatDraw:
        return replace(self, h=self.h[start:stop])

    def sigma_c2(self) -> torch.Tensor:
        """(n,) float32: N0 / |h|^2 per real latent dim, the receiver's noise after zero forcing (its CSI)."""
        return equalised_noise(self.n0, self.h)


def draw_gains(n: int, cfg: LinkConfig, generator: torch.Generator) -> torch.Tensor:
    """``n`` independent block-fading gains, complex64 (n,), E|h|^2 = 1; ``fading="none"`` draws nothing, h = 1.

    ``rayleigh``: h ~ CN(0, 1). ``rician``: sqrt(K/(K+1)) + sqrt(1/(K+1)) CN(0, 1), K = ``rician_k`` (linear)."""
    if cfg.fading == "none":
        return torch.ones(n, dtype=torch.complex64)
    scatter = seeded(GenerateFlatFadingChannel, generator, num_tx_ant=1, num_rx_ant=1)(n).reshape(n)
    if cfg.fading == "rayleigh":
        return scatter
    k = cfg.rician_k
    return (math.sqrt(k / (k + 1)) + math.sqrt(1 / (k + 1)) * scatter).to(torch.complex64)


class FlatPhy:
    """The flat channel of one link.

    Parameters: cfg, the link's settings (``fading``, ``rician_k``, ``coherence_frames``, ``erasure_prob``);
    noise, the link's generator (per-frame gains, noise, erasures); fade, its generator of block gains.
    """

    def __init__(self, cfg: LinkConfig, noise: torch.Generator, fade: torch.Generator):
        self.cfg, self.noise, self.fade = cfg, noise, fade
        self._block: torch.Tensor | None = None  # the current coherence block's gain (1,)
        self._block_left = 0

    def draw(self, n: int, n0: float) -> FlatDraw:
        """The gains of the next ``n`` frames (a new gain per frame, or held over coherence blocks) at AWGN ``n0``."""
        cfg = self.cfg
        if cfg.coherence_frames <= 1 or cfg.fading == "none":
            return FlatDraw(draw_gains(n, cfg, self.noise), n0)
        h = torch.empty(n, dtype=torch.complex64)
        for i in range(n):
            if self._block_left <= 0 or self._block is None:
                self._block, self._block_left = draw_gains(1, cfg, self.fade), cfg.coherence_frames
            h[i] = self._block[0]
            self._block_left -= 1
        return FlatDraw(h, n0)

    def carry(self, x: torch.Tensor, draw: FlatDraw) -> ChannelOutput:
        """Send real latents over drawn gains: AWGN, zero forcing, erasures (docs/design.md §3, channel).

        Input: x (B, k) float32, at most unit power per real dim; draw, the channel of these B frames.
        Output: latent (B, k) after zero forcing, sigma_c2 (B,) = N0 / |h|^2 per real dim, gain (B,), erased (B, k).
        """
        c = to_symbols(x.detach().to("cpu", torch.float32))
        h = draw.h
        received = seeded(AWGN, self.noise)(h[:, None] * c, draw.n0)
        equalised = received / h[:, None]
        erased_sym = torch.zeros(c.shape, dtype=torch.bool)
        if self.cfg.erasure_prob > 0:
            erased_sym = torch.rand(c.shape, generator=self.noise) < self.cfg.erasure_prob
            equalised = torch.where(erased_sym, torch.zeros_like(equalised), equalised)
        return ChannelOutput(latent=from_symbols(equalised).to(x.device), sigma_c2=draw.sigma_c2().to(x.device), gain=h,
                             erased=erased_sym.repeat_interleave(2, dim=-1).to(x.device))
