"""Multi-antenna ofdm links: per-RE channels, per-RE null-space self-noise and per-RE CSI (docs/design.md §3,
multi-antenna links and null-space self-noise, and OFDM), measured statistically: one antenna each is the
single-antenna grid's channel; the power is 1 per channel use; with perfect CSI the null-space self-noise is invisible
to the legitimate receiver at every RE and its noise is the beam's; fed-back CSI is the same realisation d frames
earlier with the grid's LS error per entry; an eavesdropper with n_tx antennas cancels the null space; settings that
disagree with the link get one-line errors."""

from __future__ import annotations

import math

import pytest
import torch

from diffsem.antenna_path import send_antennas
from diffsem.config import LinkConfig, ModelConfig
from diffsem.diffusion import alphas_cumprod
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, TX, role_generators
from diffsem.models import power_normalise
from diffsem.phy.antennas import AntennaConfig, MimoLink
from diffsem.phy.grid import WINDOW_FRAMES, GridLayout
from diffsem.phy.nullspace import NullSpaceConfig, check_csi
from diffsem.phy.ofdm import OfdmPhy

K = 256
ABAR = alphas_cumprod(ModelConfig())
T_STAR = 300
A = float(ABAR[T_STAR])
NULL = NullSpaceConfig(beam_fraction=0.02, null_space=True)
PERFECT = {"phy": "ofdm", "estimator": "perfect", "feedback_delay": 0}


def _latents(n: int) -> torch.Tensor:
    return power_normalise(torch.randn(n, K, generator=torch.Generator().manual_seed(0)))


def _links(link: dict, n_tx: int, eves: dict[str, int]) -> tuple[dict[str, MimoLink], dict[str, torch.Generator]]:
    gens = role_generators(0, [TX, LEGIT, *eves], 20.0, T_STAR)
    links = {LEGIT: MimoLink(LinkConfig(snr_db=20.0, **link), AntennaConfig(n_tx=n_tx), gens[LEGIT], K)}
    for name, n_rx in eves.items():
        links[name] = MimoLink(LinkConfig(snr_db=20.0, **link), AntennaConfig(n_tx=n_tx, n_rx=n_rx), gens[name], K)
    return links, gens


@pytest.mark.parametrize("model", ["TDL-A", "CDL-C"])
def test_one_antenna_each_is_the_single_antenna_grids_channel(model: str) -> None:
    cfg = LinkConfig(phy="ofdm", channel_model=model, feedback_delay=2, speed_kmh=30.0)
    mimo = MimoLink(cfg, AntennaConfig(), torch.Generator().manual_seed(7), K).draw(100)
    siso = OfdmPhy(cfg, torch.Generator().manual_seed(7), K).draw(100, 0.01)
    pos = GridLayout.of(cfg, K).positions
    assert mimo.h.shape == (100, K // 2, 1, 1)
    assert torch.equal(mimo.h[..., 0, 0], siso.h[:, pos[:, 0], pos[:, 1]])


@pytest.mark.parametrize("model", ["TDL-A", "CDL-C"])
def test_every_entry_has_unit_mean_gain_and_feedback_is_the_realisation_d_frames_earlier(model: str) -> None:
    cfg = LinkConfig(phy="ofdm", channel_model=model, feedback_delay=3, estimator="perfect")
    link = MimoLink(cfg, AntennaConfig(n_tx=4, n_rx=2), torch.Generator().manual_seed(1), K)
    draw = link.draw(4 * WINDOW_FRAMES)  # four independent windows
    assert draw.h.shape == (4 * WINDOW_FRAMES, K // 2, 2, 4)
    assert 0.8 < float(draw.h.abs().pow(2).mean()) < 1.2
    for w in range(4):  # inside a window, frame i's CSI is frame i - d's channel
        frames = slice(w * WINDOW_FRAMES, (w + 1) * WINDOW_FRAMES)
        h, then = draw.h[frames], link.feedback(draw)[frames]
        assert torch.equal(then[3:], h[:-3]) and not torch.equal(then[:3], h[:3])


def test_ls_csi_on_the_grid_has_the_grids_ls_error_per_entry() -> None:
    cfg = LinkConfig(phy="ofdm", snr_db=10.0, estimator="ls", feedback_delay=1)
    link = MimoLink(cfg, AntennaConfig(n_tx=4), torch.Generator().manual_seed(2), K)
    draw = link.draw(3000)
    err = (link.feedback(draw) - draw.then).abs().pow(2)  # (3000, k/2, 1, 4)
    want = link.csi_error  # N0 e(RE), (k/2,): Sionna's LS error after linear interpolation
    assert isinstance(want, torch.Tensor) and want.shape == (K // 2,) and float(want.min()) > 0
    per_re = err.mean(dim=(0, 2, 3))  # 12,000 entries per RE
    assert float((per_re / want - 1).abs().max()) < 0.06
    assert abs(float(per_re.mean() / want.mean()) - 1) < 0.01


def test_per_re_null_space_self_noise_is_invisible_to_the_legitimate_receiver_with_perfect_csi() -> None:
    links, gens = _links(PERFECT, 4, {})
    out = send_antennas(_latents(500), T_STAR, ABAR, links, gens, NULL)
    power = out.sent.x.abs().pow(2).sum(-1)  # (B, k/2)
    assert abs(float(power.mean()) - 1.0) < 0.01
    h = out.draws[LEGIT].h[:, :, 0]  # (B, k/2, 4): one channel per RE
    c = torch.complex(out.sent.u[:, 0::2], out.sent.u[:, 1::2]) / math.sqrt(2)
    null_part = out.sent.x - math.sqrt(NULL.beam_fraction) * out.sent.beam.w * c[..., None]
    leaked = (h * null_part).sum(-1)  # what the null-space self-noise adds at its antenna, per RE
    assert float(leaked.abs().pow(2).mean()) < 1e-10 * float(null_part.abs().pow(2).sum(-1).mean())
    legit = out.views[LEGIT]
    # its noise per real dim is N0 / (beta |h|^2) at each RE, the per-RE feedback's level before quantisation
    expected = (0.01 / (NULL.beam_fraction * h.abs().pow(2).sum(-1).double())).repeat_interleave(2, dim=1)
    assert torch.allclose(legit.channel.sigma_c2.double(), expected, rtol=1e-4)
    level = A / (A + out.sent.header.sigma_self2 + legit.channel.sigma_c2)  # per real dim
    compensated = out.sent.header.sigma_self2 > 0
    assert compensated.float().mean() > 0.8
    assert float((level[compensated] - A).abs().max()) < 0.02  # 0.5 dB feedback steps
    assert abs(float(level[compensated].mean()) - A) < 0.002
    residual = (legit.channel.latent - out.sent.u) / legit.channel.sigma_c2.sqrt()
    assert abs(float(residual.var()) - 1.0) < 0.02


def test_an_ofdm_eavesdropper_with_n_tx_antennas_cancels_the_per_re_null_space() -> None:
    links, gens = _links(PERFECT, 4, {"eve1": 1, "eve4": 4})
    out = send_antennas(_latents(300), None, ABAR, links, gens, NULL)
    one, four = (float(out.views[f"eve{n}"].abar_eff.mean()) for n in (1, 4))
    assert one < 2 * NULL.beam_fraction < 0.2 < four
    assert float(out.views[LEGIT].abar_eff.mean()) > 0.8


@pytest.mark.parametrize(("link", "array", "k", "words"), [
    ({"channel_model": "TDL-C"}, {"channel_model": "CDL-C"}, K, "channel_model='CDL-C' (the link has 'TDL-C')"),
    ({"feedback_delay": 1}, {"feedback_delay": 2}, K, "feedback_delay=2 (the link has 1)"),
    ({"feedback": "subband"}, {}, K, "needs per-RE CSI feedback"),
    ({}, {}, None, "needs the frame size k"),
    ({"fft_size": 1024}, {"n_tx": 8, "n_rx": 8}, K, "at most 64 MB"),
])
def test_ofdm_antenna_settings_that_disagree_with_the_link_get_one_line_errors(link: dict, array: dict, k: int | None,
                                                                              words: str) -> None:
    with pytest.raises(ConfigError) as err:
        MimoLink(LinkConfig(phy="ofdm", **link), AntennaConfig(**array), torch.Generator(), k)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_new_snr_keeps_the_grid_channel_running() -> None:
    """MimoLink.set_snr (a live link whose SNR follows a trace): the noise changes, the channel's frame clock does
    not; the next frames are those an unchanged link draws."""
    cfg = LinkConfig(phy="ofdm", snr_db=20.0)
    links = [MimoLink(cfg, AntennaConfig(n_tx=4), torch.Generator().manual_seed(3), K) for _ in range(2)]
    for link in links:
        link.draw(5)
    links[1].set_snr(0.0)
    assert links[1].n0 == pytest.approx(1.0) and links[0].n0 == pytest.approx(0.01)
    assert torch.equal(links[0].draw(5).h, links[1].draw(5).h)
    errors = [link.csi_error for link in links]
    assert isinstance(errors[0], torch.Tensor) and isinstance(errors[1], torch.Tensor)
    assert torch.allclose(errors[1], errors[0] * 100)  # LS: N0 e(RE)


def test_the_csi_error_must_be_one_per_channel_use() -> None:
    csi = torch.ones(2, K // 2, 1, 4, dtype=torch.complex64)
    for error, words in ((torch.ones(3), "CSI error variance of shape (3,) for CSI of 128 channel uses"),
                         (-1.0, "must be finite and >= 0"), (torch.full((K // 2,), float("nan")), "finite")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            check_csi(csi, 4, 2, K, error)


def test_antennas_eval_on_ofdm_opens_the_keyless_gap_per_re(tmp_path, cli) -> None:
    """`diffsem antennas eval --phy ofdm`: four transmit antennas precoding per RE on TDL-A open the gap against a
    one-antenna eavesdropper at equal SNR; the rows say which PHY they are."""
    import json

    assert cli("antennas", "eval", "--phy", "ofdm", "--n", "60", "--attacks", "feature-classifier", "--t-stars",
               "none", "--beam-fractions", "0.005", "--device", "cpu", "--out", str(tmp_path)).code == 0
    (row,) = json.loads((tmp_path / "antennas.json").read_text())["rows"]
    assert (row["phy"], row["channel_model"], row["n_tx"]) == ("ofdm", "TDL-A", 4)
    assert row["legit_acc"] > 0.9 and row["secrecy_gap"] > 0.4  # about 99.7% against 31% on 300 images
    assert "| ofdm TDL-A, perfect, delay 0 | 4 |" in (tmp_path / "antennas.md").read_text()
