"""The OFDM PHY's contracts (docs/design.md §3, OFDM and per-RE self-noise), measured statistically: the SNR
convention per resource element, the mapper's layout, Doppler time correlation across frames, the delayed and
quantised CSI feedback, the per-RE self-noise level at the legitimate receiver, and the frame path's
one-generator-per-role rule for OFDM links."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffsem.config import LinkConfig, ModelConfig, build
from diffsem.diffusion import alphas_cumprod
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, TX, role_generators, send
from diffsem.models import power_normalise
from diffsem.phy import GridLayout, Link, check_link, dequantise_csi, quantise_csi
from diffsem.phy.grid import CSI_STEP_DB
from diffsem.phy.ofdm import WINDOW_FRAMES, OfdmPhy

K = 256
ABAR = alphas_cumprod(ModelConfig())
OFDM = LinkConfig(snr_db=10.0, phy="ofdm")
PERFECT = OFDM.model_copy(update={"estimator": "perfect", "feedback_delay": 0})


N0 = 0.1  # 10 dB


def ofdm(cfg: LinkConfig, seed: int = 0) -> OfdmPhy:
    """The ofdm channel of one link, its noise generator seeded with ``seed``."""
    return OfdmPhy(cfg, torch.Generator().manual_seed(seed), K)


def link(cfg: LinkConfig, seed: int) -> Link:
    return Link(cfg.model_copy(update={"seed": seed}), K)


def _db(x: float) -> float:
    return 10 * math.log10(x)


def _latents(n: int, seed: int = 0) -> torch.Tensor:
    return power_normalise(torch.randn(n, K, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize(("values", "words"), [
    ({"channel_model": "TDL-F"}, "channel_model='TDL-F' is not one of TDL-A"),
    ({"delay_spread_ns": 0.0}, "delay_spread_ns=0.0 ns is out of range (0, 5000] ns"),
    ({"delay_spread_ns": 1e6}, "delay_spread_ns=1000000.0 ns is out of range (0, 5000] ns"),
    ({"speed_kmh": -1.0}, "speed_kmh=-1.0 km/h is out of range [0, 500] km/h"),
    ({"pilot_symbols": (2, 14)}, "must be distinct OFDM symbol indices in [0, 14)"),
    ({"subcarrier_spacing_khz": 20.0}, "subcarrier_spacing_khz=20.0 kHz is not one of 15, 30, 60, 120, 240"),
])
def test_bad_phy_settings_get_one_line_errors(values: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        build(LinkConfig, phy="ofdm", **values)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_grid_too_small_for_the_frame_says_how_many_data_res_it_has_and_needs() -> None:
    small = LinkConfig(phy="ofdm", fft_size=12, ofdm_symbols=12, pilot_symbols=(2, 9))
    with pytest.raises(ConfigError, match="has 120 data REs; a frame of k=256 real values needs 128"):
        check_link(small, K)
    check_link(OFDM, K)
    check_link(small.model_copy(update={"phy": "flat"}), K)  # a flat link carries any frame


def test_layout_matches_sionnas_resource_grid_mapper() -> None:
    link = ofdm(OFDM, 0)
    assert link.rg.num_data_symbols == link.layout.data_res == 144
    ids = torch.arange(1, link.rg.num_data_symbols + 1).to(torch.complex64)
    grid = link.mapper(ids[None, None, None])[0, 0, 0]  # (S, F)
    pos = link.layout.positions
    assert torch.equal(grid[pos[:, 0], pos[:, 1]].real.long(), torch.arange(1, K // 2 + 1))


def test_per_re_snr_convention_and_reported_noise_with_perfect_csi() -> None:
    x = _latents(1000, 1)
    link = ofdm(PERFECT, 2)
    draw = link.draw(len(x), N0)
    out = link.carry(x, draw)
    pos = link.layout.positions
    h = draw.h[:, pos[:, 0], pos[:, 1]]
    raw = h * (torch.complex(out.latent[:, 0::2], out.latent[:, 1::2]) - torch.complex(x[:, 0::2], x[:, 1::2])) / math.sqrt(2)
    assert abs(_db(1.0 / float(raw.abs().pow(2).mean())) - 10.0) < 0.05  # 128,000 symbols at Es/N0 = 10 dB
    # LMMSE's no_eff per RE is N0 / |H|^2 for both real values of the symbol, and the feedback measures the same.
    expected = (0.1 / h.abs().pow(2)).repeat_interleave(2, dim=-1)
    assert torch.allclose(out.sigma_c2, expected.float(), rtol=1e-3)
    assert torch.allclose(out.csi, expected[:, 0::2].float(), rtol=1e-3)


def test_tdl_channel_has_unit_average_power_and_doppler_time_correlation() -> None:
    def corr(speed: float, lag: int, windows: int) -> tuple[float, float]:
        link = ofdm(OFDM.model_copy(update={"speed_kmh": speed}), 3)
        h = link.draw(windows * WINDOW_FRAMES, N0).h[:, 0, 0].reshape(windows, -1)  # one RE, continuous within a window
        a, b = h[:, :-lag], h[:, lag:]
        return float((a.conj() * b).mean().abs() / h.abs().pow(2).mean()), float(h.abs().pow(2).mean())

    slow, power = corr(3.0, 1, 32)
    fast, _ = corr(120.0, 4, 16)
    assert slow > 0.99  # 3 km/h, 0.5 ms apart: the channel barely moves
    assert fast < 0.6  # 120 km/h, 2 ms apart: J0(2 pi 389 Hz 2 ms) ~ -0.18, stale
    assert 0.6 < power < 1.4  # 32 independent TDL-A realisations around E|H|^2 = 1 (standard error 0.18)


def test_feedback_is_the_measurement_of_frame_i_minus_delay_grouped_and_quantised() -> None:
    link = ofdm(OFDM.model_copy(update={"feedback_delay": 2}), 4)
    first, second = link.draw(5, N0), link.draw(3, N0)
    fb1, fb2 = link.feedback(first), link.feedback(second)
    assert torch.equal(fb1.codes[:2], quantise_csi(first.stale[:2]))  # the window's lead-in frames
    assert torch.equal(fb1.codes[2:], quantise_csi(first.csi[:3]))
    assert torch.equal(fb2.codes, quantise_csi(torch.cat([first.csi[3:], second.csi[:1]])))
    assert torch.equal(link.feedback(link.draw(1, N0)).codes, quantise_csi(second.csi[1:2]))
    # Across a window boundary the feedback still comes from the same realisation, one frame earlier.
    edges = [ofdm(OFDM, i).draw(WINDOW_FRAMES + 1, N0) for i in range(8)]
    same = [float((10 * (e.csi[-1] / e.stale[-1]).log10()).abs().mean()) for e in edges]
    other = [float((10 * (e.csi[-1] / e.csi[-2]).log10()).abs().mean()) for e in edges]
    assert sum(same) / len(same) < 0.2 and sum(other) / len(other) > 2.0  # dB: 0.5 ms apart vs independent realisations
    levels = torch.logspace(-3, 2, 50)
    assert (10 * torch.log10(dequantise_csi(quantise_csi(levels)) / levels)).abs().max() <= CSI_STEP_DB / 2 + 1e-4
    sub = ofdm(OFDM.model_copy(update={"feedback": "subband", "subband_size": 4}))
    assert sub.n_units == 3 and sub.feedback(sub.draw(2, N0)).codes.shape == (2, 3)
    assert torch.equal(GridLayout.of(OFDM, K).units("subband", 4)[:12], torch.arange(12) // 4)


def test_legitimate_receiver_sees_z_t_at_a_per_re_where_compensation_holds() -> None:
    s = _latents(1000, 5)
    gens = role_generators(0, [TX], "per-re")
    sent = send(s, 300, ABAR, {LEGIT: link(PERFECT, 1)}, gens)
    a = sent.header.a
    v = sent.views[LEGIT]
    held = (v.channel.sigma_c2 < 0.8 * (1 - a))  # REs whose fade the self-noise compensates, with quantisation room
    assert 0.5 < float(held.float().mean()) < 1.0
    total = a + sent.header.sigma_self2 + v.channel.sigma_c2
    level = a / total
    assert abs(float(level[held].mean()) / a - 1) < 0.01  # compensation: abar_eff = a per RE (0.5 dB CSI steps)
    noise = v.z - level.sqrt() * s
    assert abs(float(noise[held].pow(2).mean()) / (1 - a) - 1) < 0.02  # z_t's noise variance 1 - a
    assert float(sent.x.pow(2).mean()) <= 1.0 + 0.01  # transmit power stays at most 1 per real dim


def test_ofdm_links_own_their_generators_adding_an_eavesdropper_moves_nothing_else() -> None:
    s = _latents(64, 6)

    def run(with_far: bool) -> dict:
        gens = role_generators(1, [TX], 10.0)
        links = {LEGIT: link(OFDM, 1), "eve": link(OFDM, 2)}
        if with_far:
            links["far"] = link(OFDM.model_copy(update={"snr_db": 0.0}), 3)
        return send(s, 300, ABAR, links, gens).views

    one, two = run(False), run(True)
    for name in (LEGIT, "eve"):
        assert torch.equal(one[name].z, two[name].z)
    # The eavesdropper's own generator gives it an independent channel realisation.
    assert not torch.allclose(two[LEGIT].channel.gain, two["eve"].channel.gain)


def test_erase_policy_zeroes_deep_faded_dims_and_reports_the_kept_level() -> None:
    s = _latents(200, 7)
    gens = role_generators(2, [TX], "erase")
    sent = send(s, 300, ABAR, {LEGIT: link(OFDM, 2)}, gens, policy="erase")
    v = sent.views[LEGIT]
    level = sent.header.a / (sent.header.a + sent.header.sigma_self2 + v.channel.sigma_c2)
    dropped = level < 0.5 * level.max(dim=1, keepdim=True).values
    assert torch.all(v.z[dropped] == 0) and torch.all(v.abar_eff >= level.min(dim=1).values)


def test_ls_feedback_predicts_the_receivers_noise_and_the_subcarrier_snr_strip() -> None:
    link = ofdm(OFDM, 9)
    draw = link.draw(300, N0)
    out = link.carry(_latents(300, 9), draw)
    ratio = out.sigma_c2[:, 0::2] / draw.csi  # LMMSE's no_eff against the fed-back N0 (1 + e) / |H|^2
    assert abs(float(ratio.median()) - 1) < 0.05
    strip = draw.subcarrier_snr_db()
    assert strip.shape == (300, 12)
    assert torch.allclose(strip, 10 * torch.log10(draw.h.abs().pow(2).mean(dim=1) / draw.n0), atol=1e-4)


def test_cdl_links_carry_frames_with_unit_energy_windows() -> None:
    link = ofdm(OFDM.model_copy(update={"channel_model": "CDL-C", "speed_kmh": 30.0}))
    draw = link.draw(WINDOW_FRAMES, N0)
    out = link.carry(_latents(WINDOW_FRAMES, 10), draw)
    assert abs(float(draw.h.abs().pow(2).mean()) - 1) < 0.05 and out.latent.shape == (WINDOW_FRAMES, K)  # + lead-in
    assert torch.isfinite(out.sigma_c2).all()


def test_sionna_is_imported_only_under_diffsem_phy_and_only_when_a_link_is_used() -> None:
    root = Path(__file__).resolve().parent.parent
    users = [p.relative_to(root) for p in root.rglob("*.py") if ".venv" not in p.parts
             and re.search(r"^\s*(import|from) sionna", p.read_text(), re.MULTILINE)]
    assert users and all(p.parts[:2] == ("diffsem", "phy") for p in users), users
    probe = "import sys, diffsem.framepath, diffsem.evaluate, diffsem.phy; print('sionna' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


def test_ofdm_eval_is_reproducible_and_writes_the_csi_aging_table_and_plot(mnist_bundle, tmp_path: Path) -> None:
    from diffsem.data import load_split
    from diffsem.evaluate import EvalConfig, evaluate
    from diffsem.report import write_all

    images, labels = load_split("mnist", "test")
    ec = EvalConfig(n=64, snrs=[10.0], t_stars=[300], eve_offsets=[0.0], modes=["direct"], classifiers=["matched"],
                    phy={"phy": "ofdm", "speed_kmh": 3.0}, aging_speeds=[3.0, 120.0], aging_delays=[1], batch_size=32)
    a = evaluate(mnist_bundle, ec, images[:64], labels[:64])
    b = evaluate(mnist_bundle, ec, images[:64], labels[:64])
    assert a["rows"] == b["rows"] and a["aging"] == b["aging"]
    assert [(r["speed_kmh"], r["feedback_delay"]) for r in a["aging"]] == [(3.0, 1), (120.0, 1)]
    assert a["aging"][0]["acc"]["direct"] == next(r for r in a["rows"] if r["t_star"] == 300)["acc"]["direct"]
    paths = write_all(a, tmp_path)
    assert paths["aging"].stat().st_size > 0 and "## CSI aging" in paths["table"].read_text()
