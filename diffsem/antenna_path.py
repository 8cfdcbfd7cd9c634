"""The frame path of a multi-antenna transmitter with null-space self-noise (docs/design.md §3, multi-antenna links
and null-space self-noise): the legitimate CSI, the transmitter, every link, every listener's view.

    legitimate draw + fed-back CSI -> beam and null space -> DiffSem's self-noise for the beam (framepath.transmit)
        -> precoding (n_tx antenna signals) -> every link (MimoLink.carry) -> LMMSE combining -> framepath.view

It is :func:`diffsem.framepath.send` with antennas: the same self-noise rule (random, or keyed: the beam's eps_self
from the shared key, which the legitimate receiver removes after combining), public header and listener view, and
the same generators in the same order (docs/design.md §3, frame path):

1. ``links[legit]``'s generator: its channels (and their aging), then the pilot noise of its LS estimate;
2. ``gens["tx"]``: eps_self (random self-noise; keyed self-noise draws it from the key and the nonces instead), then
   the null-space self-noise n (only when there is a null space to fill; never from the key: the key holder does
   not need it, it is invisible to it);
3. each link's generator: its own channels (an eavesdropper's), then its noise.

With one transmit antenna, perfect CSI and no delay this draws what ``framepath.send`` draws over flat Rayleigh links
and gives the same frames (tests/test_antennas.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from diffsem.channel import ChannelOutput
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, TX, KeyedSender, View, transmit, view
from diffsem.phy.antennas import MimoDraw, MimoLink
from diffsem.phy.grid import CsiFeedback, quantise_csi
from diffsem.phy.nullspace import (
    Beam,
    NullSpaceConfig,
    beamform,
    check_csi,
    combine,
    csi_leak,
    listener_channel,
    null_power,
    precode,
)
from diffsem.pipeline import KeyedInfo, PublicHeader, privacy_level


@dataclass
class Precoded:
    """A batch at the transmitter: antenna signals x (B, k/2, n_tx) complex64, the self-noised frames u (B, k) they
    carry on the beam, the public header, the beam, the null-space power p_null per channel use ((B, 1) or
    (B, k/2); None without null-space self-noise) and, for keyed self-noise, the nonces the key holder needs."""

    x: torch.Tensor
    u: torch.Tensor
    header: PublicHeader
    beam: Beam
    p_null: torch.Tensor | None
    keyed: KeyedInfo | None = None


def transmit_antennas(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, csi: torch.Tensor, n0: float,
                      csi_error: float | torch.Tensor, split: NullSpaceConfig, n_tx: int, generator: torch.Generator,
                      keyed: KeyedSender | None = None) -> Precoded:
    """Transmitter side: latents s (B, k) -> antenna signals for fed-back CSI (B, M, n_rx_legit, n_tx) complex of a
    legitimate link with noise ``n0`` per complex symbol and an estimation error of variance ``csi_error`` per
    channel entry (a float, or (M,) per channel use when M = k/2: an LS estimate on an ofdm grid).

    DiffSem's rule runs on the beam-normalised feedback (N0 + leak) / (beta g2) (:meth:`Beam.feedback`; one value
    per frame, or per symbol quantised as :class:`~diffsem.phy.grid.CsiFeedback` when M = k/2); ``generator`` draws
    eps_self (unless ``keyed`` gives it), then the null-space self-noise."""
    b, k = s.shape
    check_csi(csi, n_tx, b, k, csi_error)
    split.check(n_tx, csi.shape[2])
    beam = beamform(csi, split.beam_fraction)
    leak = csi_leak(csi_error, beam.beta, privacy_level(t_star, abar)) if split.null_space and beam.d else 0.0
    fb = beam.feedback(n0, leak)
    feedback = fb[:, 0] if fb.shape[1] == 1 else CsiFeedback(quantise_csi(fb), torch.arange(k // 2))
    u, header, info = transmit(s, t_star, abar, feedback, generator, keyed)
    p_null = null_power(beam.beta, header.a, header.sigma_self2, k) if split.null_space else None
    return Precoded(precode(u, beam, p_null, generator), u, header, beam, p_null, info)


def receive(y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> ChannelOutput:
    """A listener's side: received y (B, k/2, n_rx), the beam's effective channel g (B, M, n_rx) and the
    interference-plus-noise covariance r (B, M, n_rx, n_rx) it sees (what it learns from the air:
    :func:`~diffsem.phy.nullspace.listener_channel`) -> what its LMMSE combiner delivers (latent (B, k), its noise
    per real dim, the beam's effective gain), ready for :func:`diffsem.framepath.view`."""
    latent, sigma2 = combine(y, g, r)
    gain = (g[:, 0, 0] if g.shape[-1] == 1 else g[:, 0].norm(dim=-1)).to(torch.complex64)
    return ChannelOutput(latent=latent, sigma_c2=sigma2, gain=gain, erased=torch.zeros(latent.shape, dtype=torch.bool))


@dataclass
class AntennaSent:
    """A batch after :func:`send_antennas`: what the transmitter sent, the legitimate CSI it used, each link's draw
    and each listener's view."""

    sent: Precoded
    csi: torch.Tensor
    draws: dict[str, MimoDraw]
    views: dict[str, View]


def send_antennas(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, links: Mapping[str, MimoLink],
                  gens: Mapping[str, torch.Generator], split: NullSpaceConfig, legit: str = LEGIT,
                  keyed: KeyedSender | None = None) -> AntennaSent:
    """Send latents s (B, k) at privacy level ``t_star`` over multi-antenna ``links`` (name -> :class:`MimoLink`,
    each with its own generator; ``links[legit]`` feeds back the CSI and, with ``keyed`` self-noise, its listener
    holds the key); ``gens["tx"]`` is the transmitter's."""
    n_tx = {link.array.n_tx for link in links.values()}
    if len(n_tx) != 1:
        raise ConfigError(f"every link of a transmitter must have its n_tx; got {sorted(n_tx)}")
    b = s.shape[0]
    legit_link = links[legit]
    draws = {legit: legit_link.draw(b)}
    csi = legit_link.feedback(draws[legit])
    sent = transmit_antennas(s, t_star, abar, csi, legit_link.n0, legit_link.csi_error, split, n_tx.pop(), gens[TX],
                             keyed)
    views = {}
    for name, link in links.items():
        draw = draws[name] if name in draws else draws.setdefault(name, link.draw(b, draws[legit]))
        g, r = listener_channel(draw.h, sent.beam, sent.p_null, link.n0)  # the link's physics: what it learns
        key = keyed.key if keyed is not None and name == legit else None
        views[name] = view(receive(link.carry(sent.x, draw), g, r), sent.header, sent.keyed, key)
    return AntennaSent(sent, csi, draws, views)
