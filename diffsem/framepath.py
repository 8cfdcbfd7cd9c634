"""The frame path, one function for everyone who sends frames: the evaluator, the attack evaluation, the benchmarks,
and (split at the process boundaries) the live transmitter and the channel emulator's links.

    legitimate link's feedback(B) -> self-noise (transmitter) -> every link's carry(x) -> every listener's view

Random-draw order (docs/design.md §3, frame path). Each role owns its generators, so adding or removing a link never
moves another role's noise:

1. the legitimate link (a :class:`diffsem.phy.Link` with its own seeded generators) draws the batch's channel with
   ``feedback(B)``: on a flat link its fading gains h (B,) (no draw for ``fading="none"``), fed back as
   sigma_c^2 = N0 / |h|^2 per frame; on an ofdm link its channel, fed back per RE, delayed and quantised;
2. ``gens["tx"]``: eps_self (B, k) for random self-noise; keyed self-noise draws from the key and the nonces instead;
3. each link's ``carry(x)``: the legitimate link over the channel of step 1, every other link over its own fresh
   draw (its fading, then its noise, then its erasures).

A link given as ``None`` is a noiseless tap on the transmitted signal (an eavesdropper at infinite SNR).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from diffsem.channel import ChannelOutput
from diffsem.config import LinkConfig, build
from diffsem.keyed import NonceSource
from diffsem.phy.link import Link, carry
from diffsem.pipeline import (
    Feedback,
    KeyedInfo,
    PublicHeader,
    keyed_listener_view,
    keyed_self_noise_frame,
    listener_view,
    self_noise_frame,
)
from diffsem.seeds import derive_seed, generator

TX = "tx"  # the transmitter's generator (eps_self)
LEGIT = "legit"  # the legitimate link's role (its seed; it gives the CSI)


def eve_role(offset_db: float) -> str:
    """The generator name of the eavesdropper link at ``offset_db`` from the legitimate SNR, e.g. ``eve-5.0``."""
    return f"eve{float(offset_db)}"


def role_generators(seed: int, roles: Iterable[str], *condition: object) -> dict[str, torch.Generator]:
    """One CPU generator per role, seeded by (seed, role, *condition): e.g. ``diffsem eval`` uses (SNR, t*)."""
    return {role: generator(seed, role, *condition) for role in roles}


def condition_links(k: int, seed: int, snr_db: float, t_star: int | None, eve_offsets: Iterable[float],
                    settings: Mapping[str, Any]) -> tuple[dict[str, Link | None], dict[str, torch.Generator]]:
    """One (SNR, t*) condition's links and the transmitter's generator, as ``diffsem eval`` and ``diffsem attack eval``
    make them: the legitimate link at ``snr_db`` and one eavesdropper link per offset (``inf``: a noiseless tap), each
    with ``settings`` (the other LinkConfig fields) and its own seed derived from (seed, role, SNR, t*), as is the
    ``tx`` generator. A link is made once per condition, so its channel runs on across the condition's batches;
    k: real values per frame."""
    cfgs: dict[str, float | None] = {LEGIT: snr_db}
    for off in eve_offsets:
        cfgs[eve_role(off)] = None if off == math.inf else snr_db + off
    links = {role: None if snr is None else Link(build(LinkConfig, snr_db=snr, seed=derive_seed(seed, role, snr_db, t_star),
                                                       **settings), k)
             for role, snr in cfgs.items()}
    return links, role_generators(seed, [TX], snr_db, t_star)


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


def view(out: ChannelOutput, header: PublicHeader, keyed: KeyedInfo | None = None, key: bytes | None = None,
         policy: str = "mean") -> View:
    """A listener's view of what its link delivered; the key holder (``key`` given) removes keyed self-noise.
    ``policy`` resolves per-dim levels (ofdm) to one per frame (:data:`diffsem.pipeline.DEEP_FADE_POLICIES`)."""
    if keyed is not None and key is not None:
        z, level = keyed_listener_view(out.latent, header, out.sigma_c2, keyed, key, policy)
    else:
        z, level = listener_view(out.latent, header, out.sigma_c2, policy)
    return View(z, level, out)


def send(s: torch.Tensor, t_star: int | None, abar: torch.Tensor, links: Mapping[str, Link | None],
         gens: Mapping[str, torch.Generator], legit: str = LEGIT, keyed: KeyedSender | None = None,
         policy: str = "mean") -> Sent:
    """Send latents s (B, k) at privacy level ``t_star`` (None: no self-noise) to every link in ``links``.

    ``links`` maps a name to a :class:`~diffsem.phy.Link` or ``None`` (a noiseless tap); ``links[legit]`` is the
    legitimate link: its ``feedback`` gives the CSI and, with keyed self-noise, its listener holds the key. ``gens``
    holds ``"tx"``, the transmitter's generator (each link owns its own). The draw order is this module's.
    ``policy``: every listener's deep-fade policy on ofdm links."""
    link = links[legit]
    csi = torch.zeros(s.shape[0]) if link is None else link.feedback(s.shape[0]).sigma_c2
    x, header, info = transmit(s, t_star, abar, csi, gens.get(TX), keyed)
    views = {name: view(carry(x, lk), header, info, keyed.key if keyed is not None and name == legit else None, policy)
             for name, lk in links.items()}
    return Sent(x, header, info, views)
