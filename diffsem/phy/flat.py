"""The ``flat`` PHY on Sionna: the paper's channel (docs/design.md §3, channel).

A frame's k/2 complex symbols see one block-fading gain h (``GenerateFlatFadingChannel``: Rayleigh CN(0, 1), or
Rician with a line-of-sight part of power K/(K+1)) and AWGN of N0 = 10^(-snr_db/10) per complex symbol (``AWGN``).
The receiver knows h and equalises by zero forcing, so the noise per real latent dim is sigma_c^2 = N0 / |h|^2.
Draw order from the link's generator: the gains, then the noise, then the erasures.
"""

from __future__ import annotations

import math

import torch
from sionna.phy.channel import AWGN, GenerateFlatFadingChannel

from diffsem.channel import ChannelOutput, equalised_noise, from_symbols, noise_variance, to_symbols
from diffsem.config import LinkConfig
from diffsem.phy.blocks import seeded


def draw_gains(n: int, link: LinkConfig, generator: torch.Generator) -> torch.Tensor:
    """``n`` block-fading gains, complex64 (n,), E|h|^2 = 1; ``fading="none"`` draws nothing and gives h = 1."""
    if link.fading == "none":
        return torch.ones(n, dtype=torch.complex64)
    scatter = seeded(GenerateFlatFadingChannel, generator, num_tx_ant=1, num_rx_ant=1)(n).reshape(n)
    if link.fading == "rayleigh":
        return scatter
    k = link.rician_k
    return (math.sqrt(k / (k + 1)) + math.sqrt(1 / (k + 1)) * scatter).to(torch.complex64)


def apply_flat(x: torch.Tensor, link: LinkConfig, generator: torch.Generator,
               gain: torch.Tensor | None = None) -> ChannelOutput:
    """Send real latents x (B, k), at most unit power per real dim, over a flat link.

    gain: (B,) complex, overrides the fading draw. Output: latent (B, k) after zero forcing, sigma_c2 (B,) per real
    dim, gain (B,), erased (B, k)."""
    b = x.shape[0]
    c = to_symbols(x.detach().to("cpu", torch.float32))
    h = draw_gains(b, link, generator) if gain is None else gain.to(torch.complex64)
    received = seeded(AWGN, generator)(h[:, None] * c, float(noise_variance(link.snr_db)))
    equalised = received / h[:, None]
    erased_sym = torch.zeros(c.shape, dtype=torch.bool)
    if link.erasure_prob > 0:
        erased_sym = torch.rand(c.shape, generator=generator) < link.erasure_prob
        equalised = torch.where(erased_sym, torch.zeros_like(equalised), equalised)
    sigma_c2 = equalised_noise(link.snr_db, h)
    return ChannelOutput(latent=from_symbols(equalised).to(x.device), sigma_c2=sigma_c2.to(x.device), gain=h,
                         erased=erased_sym.repeat_interleave(2, dim=-1).to(x.device))
