"""The frame path (diffsem.framepath.send) is one explicit draw-order contract: it reproduces the hand-wired sequence
draw fading -> self-noise from the equalised noise -> apply_link with that gain -> listener_view, each role's noise
comes from its own generator (adding a link moves nobody else's), the key holder alone removes keyed self-noise,
and a ``None`` link is a noiseless tap."""

from __future__ import annotations

import torch

from diffsem.channel import apply_link, draw_fading, equalised_noise
from diffsem.config import LinkConfig, ModelConfig
from diffsem.diffusion import alphas_cumprod
from diffsem.framepath import LEGIT, TX, KeyedSender, eve_role, role_generators, send
from diffsem.keyed import NonceSource
from diffsem.pipeline import keyed_listener_view, listener_view, self_noise_frame

ABAR = alphas_cumprod(ModelConfig())
S = torch.randn(64, 256, generator=torch.Generator().manual_seed(5))
RAYLEIGH = LinkConfig(snr_db=5.0, fading="rayleigh")
EVE = LinkConfig(snr_db=0.0, fading="rician")


def test_send_follows_the_documented_draw_order() -> None:
    gens = role_generators(3, [TX, LEGIT, "eve"], 5.0, 300)
    sent = send(S, 300, ABAR, {LEGIT: RAYLEIGH, "eve": EVE}, gens)
    g = role_generators(3, [TX, LEGIT, "eve"], 5.0, 300)
    gain = draw_fading(len(S), RAYLEIGH, g[LEGIT])
    x, header = self_noise_frame(S, 300, ABAR, equalised_noise(5.0, gain), g[TX])
    legit = apply_link(x, RAYLEIGH, g[LEGIT], gain=gain)
    eve = apply_link(x, EVE, g["eve"])
    assert torch.equal(sent.x, x) and torch.equal(sent.views[LEGIT].channel.gain, gain)
    for name, out in ((LEGIT, legit), ("eve", eve)):
        z, level = listener_view(out.latent, header, out.sigma_c2)
        assert torch.equal(sent.views[name].z, z) and torch.equal(sent.views[name].abar_eff, level)


def test_adding_an_eavesdropper_moves_no_other_role_noise() -> None:
    roles = [TX, LEGIT, eve_role(0), eve_role(-5)]
    one = send(S, 400, ABAR, {LEGIT: RAYLEIGH, eve_role(0): EVE}, role_generators(0, roles, "c"))
    two = send(S, 400, ABAR, {LEGIT: RAYLEIGH, eve_role(-5): EVE, eve_role(0): EVE}, role_generators(0, roles, "c"))
    assert torch.equal(one.x, two.x)
    for name in (LEGIT, eve_role(0)):
        assert torch.equal(one.views[name].z, two.views[name].z)
    assert not torch.equal(two.views[eve_role(0)].z, two.views[eve_role(-5)].z)


def test_only_the_key_holder_removes_keyed_self_noise_and_none_is_a_noiseless_tap() -> None:
    key = bytes(range(32))
    sent = send(S, 600, ABAR, {LEGIT: LinkConfig(snr_db=20.0), "tap": None}, role_generators(0, [LEGIT], 1),
                keyed=KeyedSender(key, NonceSource(bytes(8))))
    legit, tap = sent.views[LEGIT], sent.views["tap"]
    z, level = keyed_listener_view(legit.channel.latent, sent.header, legit.channel.sigma_c2, sent.keyed, key)
    assert torch.equal(legit.z, z) and torch.equal(legit.abar_eff, level)
    a, s2 = sent.header.a, sent.header.sigma_self2
    assert torch.allclose(tap.abar_eff, (a / (a + s2)).float()) and float(tap.abar_eff[0]) < 0.6 * float(legit.abar_eff[0])
    assert torch.allclose(tap.z, sent.x / (a + s2).float().sqrt()[:, None])
