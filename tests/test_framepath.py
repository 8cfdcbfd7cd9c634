"""The frame path (diffsem.framepath.send) is one explicit draw-order contract: it reproduces the hand-wired sequence
legitimate link's feedback -> self-noise from that CSI -> each link's carry -> listener_view, each role's noise
comes from its own generators (adding a link moves nobody else's), the key holder alone removes keyed self-noise,
and a ``None`` link is a noiseless tap."""

from __future__ import annotations

import torch

from diffsem.config import LinkConfig, ModelConfig
from diffsem.diffusion import alphas_cumprod
from diffsem.framepath import LEGIT, TX, KeyedSender, eve_role, role_generators, send
from diffsem.keyed import NonceSource
from diffsem.phy import Link
from diffsem.phy.flat import draw_gains
from diffsem.pipeline import keyed_listener_view, listener_view, self_noise_frame

ABAR = alphas_cumprod(ModelConfig())
S = torch.randn(64, 256, generator=torch.Generator().manual_seed(5))
RAYLEIGH = LinkConfig(snr_db=5.0, fading="rayleigh", seed=11)
EVE = LinkConfig(snr_db=0.0, fading="rician", seed=12)


def link(cfg: LinkConfig, seed: int | None = None) -> Link:
    return Link(cfg if seed is None else cfg.model_copy(update={"seed": seed}), 256)


def test_send_follows_the_documented_draw_order() -> None:
    gens = role_generators(3, [TX], 5.0, 300)
    sent = send(S, 300, ABAR, {LEGIT: link(RAYLEIGH), "eve": link(EVE)}, gens)
    tx = role_generators(3, [TX], 5.0, 300)[TX]
    gain = draw_gains(len(S), RAYLEIGH, torch.Generator().manual_seed(11))  # the legitimate link's first draw
    sigma_c2 = (10 ** -0.5 / gain.abs().double().pow(2)).float()  # N0 / |h|^2 at 5 dB
    x, header = self_noise_frame(S, 300, ABAR, sigma_c2, tx)
    legit = link(RAYLEIGH)
    assert torch.equal(legit.feedback(len(S)).gain, gain)
    legit_out, eve_out = legit.carry(x), link(EVE).carry(x)
    assert torch.equal(sent.x, x) and torch.equal(sent.views[LEGIT].channel.gain, gain)
    for name, out in ((LEGIT, legit_out), ("eve", eve_out)):
        z, level = listener_view(out.latent, header, out.sigma_c2)
        assert torch.equal(sent.views[name].z, z) and torch.equal(sent.views[name].abar_eff, level)


def test_self_noise_is_shaped_for_the_fade_each_frame_meets() -> None:
    """With Rayleigh fading and a new gain every frame, the legitimate level is the target a wherever the fade is no
    deeper than 1 - a: the transmitter's CSI is the channel the frame then meets (docs/design.md §3, the link)."""
    sent = send(S, 300, ABAR, {LEGIT: link(RAYLEIGH)}, role_generators(3, [TX], 5.0, 300))
    a, v = sent.header.a, sent.views[LEGIT]
    held = v.channel.sigma_c2 <= 1 - a  # fades the self-noise can compensate
    assert 0 < int(held.sum()) < len(S)
    assert torch.allclose(v.abar_eff[held].double(), torch.full((int(held.sum()),), a, dtype=torch.float64), rtol=1e-6)
    assert torch.all(v.abar_eff[~held] < a)


def test_adding_an_eavesdropper_moves_no_other_role_noise() -> None:
    gens = role_generators(0, [TX], "c")
    one = send(S, 400, ABAR, {LEGIT: link(RAYLEIGH), eve_role(0): link(EVE)}, gens)
    gens = role_generators(0, [TX], "c")
    two = send(S, 400, ABAR, {LEGIT: link(RAYLEIGH), eve_role(-5): link(EVE, 13), eve_role(0): link(EVE)}, gens)
    assert torch.equal(one.x, two.x)
    for name in (LEGIT, eve_role(0)):
        assert torch.equal(one.views[name].z, two.views[name].z)
    assert not torch.equal(two.views[eve_role(0)].z, two.views[eve_role(-5)].z)


def test_only_the_key_holder_removes_keyed_self_noise_and_none_is_a_noiseless_tap() -> None:
    key = bytes(range(32))
    sent = send(S, 600, ABAR, {LEGIT: link(LinkConfig(snr_db=20.0), 1), "tap": None}, {},
                keyed=KeyedSender(key, NonceSource(bytes(8))))
    legit, tap = sent.views[LEGIT], sent.views["tap"]
    z, level = keyed_listener_view(legit.channel.latent, sent.header, legit.channel.sigma_c2, sent.keyed, key)
    assert torch.equal(legit.z, z) and torch.equal(legit.abar_eff, level)
    a, s2 = sent.header.a, sent.header.sigma_self2
    assert torch.allclose(tap.abar_eff, (a / (a + s2)).float()) and float(tap.abar_eff[0]) < 0.6 * float(legit.abar_eff[0])
    assert torch.allclose(tap.z, sent.x / (a + s2).float().sqrt()[:, None])
