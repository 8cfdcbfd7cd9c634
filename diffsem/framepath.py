"""The frame path, one function for everyone who sends frames: the evaluator, the attack evaluation, the benchmarks,
and (split at the process boundaries) the live transmitter and the channel emulator's per-link step.

    legitimate CSI -> self-noise (transmitter) -> every link (:func:`carry`) -> every listener's view

Random-draw order (docs/design.md §3, frame path). Each role owns a generator, named in ``gens``, so adding or removing
a link never moves another role's noise:

1. ``gens[legit]``: the legitimate link's fading gains h (B,) (no draw for ``fading="none"``); the transmitter gets
   sigma_c^2 = N0 / |h|^2 per frame as CSI feedback before it sends;
2. ``gens["tx"]``: eps_self (B, k) for random self-noise; keyed self-noise draws from the key and the nonces instead;
3. ``gens[name]``, for each link: its fading gains (the legitimate link reuses those of step 1), then the channel
   noise, then the erasures (:func:`diffsem.channel.apply_link`).

An ``ofdm`` link is a stateful :class:`diffsem.phy.ofdm.OfdmLink` (made by :func:`diffsem.phy.make_link` with the
role's generator, its channel continues across batches): step 1 is its ``draw`` of the batch's channel and its
delayed, quantised per-RE ``feedback``; step 3 its ``carry`` (an eavesdropper's draws its own channel first).

A link given as ``None`` is a noiseless tap on the transmitted signal (an eavesdropper at infinite SNR).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from diffsem.channel import ChannelOutput, apply_link, draw_fading, equalised_noise
from diffsem.config import LinkConfig, build
from diffsem.keyed import NonceSource
from diffsem.phy import make_link
from diffsem.pipeline import (
    Feedback,
    KeyedInfo,
    PublicHeader,
    keyed_listener_view,
    keyed_self_noise_frame,
    listener_view,
    self_noise_frame,
)
from diffsem.seeds import generator

if TYPE_CHECKING:
    from diffsem.phy.ofdm import OfdmDraw, OfdmLink

TX = "tx"  # the transmitter's generator (eps_self)
LEGIT = "legit"  # the legitimate link's generator (fading, then channel noise)


def eve_role(offset_db: float) -> str:
    """The generator name of the eavesdropper link at ``offset_db`` from the legitimate SNR, e.g. ``eve-5.0``."""
    return f"eve{float(offset_db)}"


def role_generators(seed: int, roles: Iterable[str], *condition: object) -> dict[str, torch.Generator]:
    """One CPU generator per role, seeded by (seed, role, *condition): e.g. ``diffsem eval`` uses (SNR, t*)."""
    return {role: generator(seed, role, *condition) for role in roles}


def condition_links(k: int, seed: int, snr_db: float, t_star: int | None, eve_offsets: Iterable[float],
                    settings: Mapping[str, Any]) -> tuple[dict[str, LinkConfig | OfdmLink | None],
                                                          dict[str, torch.Generator]]:
    """One (SNR, t*) condition's links and generators, as ``diffsem eval`` and ``diffsem attack eval`` make them:
    the legitimate link at ``snr_db`` and one eavesdropper link per offset (``inf``: a noiseless tap), each with
    ``settings`` (the other LinkConfig fields) and its own generator seeded by (seed, role, SNR, t*). A link is made
    once per condition, so an ofdm link's channel runs on across the condition's batches; k: real values per frame."""
    cfgs: dict[str, LinkConfig | None] = {LEGIT: build(LinkConfig, snr_db=snr_db, **settings)}
    for off in eve_offsets:
        cfgs[eve_role(off)] = None if off == math.inf else build(LinkConfig, snr_db=snr_db + off, **settings)
    gens = role_generators(seed, [TX, *cfgs], snr_db, t_star)
    return {name: None if cfg is None else make_link(cfg, gens[name], k) for name, cfg in cfgs.items()}, gens


@dataclass(frozen=True)
class KeyedSender:
    """Keyed self-noise at the transmitter: the shared key and the nonce source (a fresh nonce per frame)."""

    key: bytes
    nonces: NonceSource


@dataclass
class View:
    """One listener's frames: z (B, k) normalised to a diffusion latent at abar_eff (B,) float32, and what its link
    delivered (``channel.latent`` is y (B, k); ``channel.sigma_c2`` its noise per real dim)."""

    z: torch.Tensor
    abar_eff: torch.Tensor
    channel: ChannelOutput


@dataclass
class Sent:
    """A batch after :func:`send`: the transmitted x (B, k), its public header and keyed data, each link's view."""

    x: torch.Tensor
    header: PublicHeader
    keyed: KeyedInfo | None
    views: dict[str, View]


def transmit(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, sigma_c2: Feedback,
             gen: torch.Generator | None, keyed: KeyedSender | None = None
             ) -> tuple[torch.Tensor, PublicHeader, KeyedInfo | None]:
    """Transmitter side: latents s (B, k) -> x (B, k), its public header and, for keyed self-noise, the nonces.

    ``sigma_c2`` is the fed-back legitimate link noise per real dim: a scalar or (B,) (flat), or the per-RE
    :class:`diffsem.phy.grid.CsiFeedback` of an ofdm link; ``gen`` draws eps_self (random self-noise); ``keyed``
    replaces it by keyed self-noise."""
    if keyed is not None:
        return keyed_self_noise_frame(s, t_star, abar, sigma_c2, keyed.key, keyed.nonces)
    if gen is None:
        raise ValueError("random self-noise needs the transmitter's generator")
    x, header = self_noise_frame(s, t_star, abar, sigma_c2, gen)
    return x, header, None


def carry(x: torch.Tensor, link: LinkConfig | OfdmLink | None, gen: torch.Generator | None, gain: torch.Tensor | None = None,
          draw: OfdmDraw | None = None) -> ChannelOutput:
    """One link's step: x (B, k) over ``link`` with its own generator (fading unless ``gain`` (B,) is given, then
    noise, then erasures); ``link=None`` is a noiseless tap (sigma_c^2 = 0, h = 1). An ofdm link (an
    :class:`~diffsem.phy.ofdm.OfdmLink`, its own generator inside) uses ``draw`` or draws the batch's channel."""
    if link is not None and not isinstance(link, LinkConfig):
        return link.carry(x, draw if draw is not None else link.draw(x.shape[0]))
    if link is None:
        b = x.shape[0]
        return ChannelOutput(latent=x.detach().clone(), sigma_c2=torch.zeros(b), gain=torch.ones(b, dtype=torch.complex64),
                             erased=torch.zeros(x.shape, dtype=torch.bool))
    if gen is None:
        raise ValueError("a noisy link needs its own generator")
    return apply_link(x, link, gen, gain=gain)


def view(out: ChannelOutput, header: PublicHeader, keyed: KeyedInfo | None = None, key: bytes | None = None,
         policy: str = "mean") -> View:
    """A listener's view of what its link delivered; the key holder (``key`` given) removes keyed self-noise.
    ``policy`` resolves per-dim levels (ofdm) to one per frame (:data:`diffsem.pipeline.DEEP_FADE_POLICIES`)."""
    if keyed is not None and key is not None:
        z, level = keyed_listener_view(out.latent, header, out.sigma_c2, keyed, key, policy)
    else:
        z, level = listener_view(out.latent, header, out.sigma_c2, policy)
    return View(z, level, out)


def _legit_csi(link: LinkConfig | OfdmLink | None, b: int, gen: torch.Generator | None
               ) -> tuple[Feedback, torch.Tensor | None, OfdmDraw | None]:
    """Step 1: the legitimate link's channel for the batch and the transmitter's feedback of it:
    (feedback, flat gains or None, ofdm draw or None)."""
    if link is None:
        return torch.zeros(b), None, None
    if isinstance(link, LinkConfig):
        gain = draw_fading(b, link, gen)
        return equalised_noise(link.snr_db, gain), gain, None
    draw = link.draw(b)
    return link.feedback(draw), None, draw


def send(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, links: Mapping[str, LinkConfig | OfdmLink | None],
         gens: Mapping[str, torch.Generator], legit: str = LEGIT, keyed: KeyedSender | None = None,
         policy: str = "mean") -> Sent:
    """Send latents s (B, k) at privacy level ``t_star`` (None: no self-noise) to every link in ``links``.

    ``links`` maps a name to a flat ``LinkConfig``, an ``OfdmLink`` or ``None``.
    ``links[legit]`` is the legitimate link: it gives the CSI and, with keyed self-noise, its listener holds the key.
    ``gens`` holds ``"tx"`` and one generator per noisy flat link, named as the link (an ofdm link holds its own);
    the draw order is this module's. ``policy``: every listener's deep-fade policy on ofdm links."""
    sigma_c2, gain, draw = _legit_csi(links[legit], s.shape[0], gens.get(legit))
    x, header, info = transmit(s, t_star, abar, sigma_c2, gens.get(TX), keyed)
    views = {name: view(carry(x, link, gens.get(name), gain if name == legit else None, draw if name == legit else None),
                        header, info, keyed.key if keyed is not None and name == legit else None, policy)
             for name, link in links.items()}
    return Sent(x, header, info, views)
