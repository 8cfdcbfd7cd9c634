"""Multi-antenna links and null-space self-noise (docs/design.md §3), measured statistically: total transmit power 1
per channel use; with perfect CSI the legitimate receiver's noise is exactly what the beam and its own channel give
and the null-space self-noise never reaches it; one transmit antenna is today's random self-noise; every listener's
combiner reports the noise it leaves; the CSI's LS error, aging and an eavesdropper's correlation have the
configured statistics; bad settings and CSI get one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from diffsem.antenna_path import receive, send_antennas, transmit_antennas
from diffsem.config import LinkConfig, ModelConfig, build
from diffsem.diffusion import alphas_cumprod
from diffsem.errors import ConfigError
from diffsem.framepath import LEGIT, TX, condition_links, eve_role, role_generators, send, view
from diffsem.models import power_normalise
from diffsem.phy.antennas import AntennaConfig, MimoLink
from diffsem.phy.nullspace import NullSpaceConfig, listener_channel

K = 256
ABAR = alphas_cumprod(ModelConfig())
T_STAR = 300
A = float(ABAR[T_STAR])


def _latents(n: int, seed: int = 0) -> torch.Tensor:
    return power_normalise(torch.randn(n, K, generator=torch.Generator().manual_seed(seed)))


def _links(snr_db: float, legit: AntennaConfig, eves: dict[str, AntennaConfig], seed: int = 0):
    gens = role_generators(seed, [TX, LEGIT, *eves], snr_db, T_STAR)
    links = {LEGIT: MimoLink(LinkConfig(snr_db=snr_db), legit, gens[LEGIT])}
    links |= {name: MimoLink(LinkConfig(snr_db=snr_db), arr, gens[name]) for name, arr in eves.items()}
    return links, gens


def _residual(view_latent: torch.Tensor, u: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """(latent - u) / sigma per real dim: unit variance when the reported sigma^2 is the true noise."""
    return (view_latent - u) / sigma2.reshape(len(u), -1).sqrt()


NULL = NullSpaceConfig(beam_fraction=0.02, null_space=True)


@pytest.mark.parametrize("n_tx", [2, 4, 8])
def test_total_transmit_power_is_one_per_channel_use(n_tx: int) -> None:
    links, gens = _links(20.0, AntennaConfig(n_tx=n_tx), {})
    out = send_antennas(_latents(400), T_STAR, ABAR, links, gens, NULL)
    power = out.sent.x.abs().pow(2).sum(-1)  # (B, k/2): per channel use, over the antennas
    assert abs(float(power.mean()) - 1.0) < 0.01  # 51,200 channel uses
    # the beam carries beta (a + sigma_self^2) of it, exactly: the rest is null-space self-noise
    beam = NULL.beam_fraction * (A + out.sent.header.sigma_self2.double())
    assert torch.allclose(out.sent.p_null[:, 0] + beam, torch.ones(400, dtype=torch.float64))


@pytest.mark.parametrize("n_rx", [1, 2])
def test_with_perfect_csi_the_legitimate_noise_is_the_beams_and_the_null_space_is_invisible(n_rx: int) -> None:
    links, gens = _links(20.0, AntennaConfig(n_tx=4, n_rx=n_rx), {})
    out = send_antennas(_latents(1000), T_STAR, ABAR, links, gens, NULL)
    h = out.draws[LEGIT].h[:, 0]  # (B, n_rx, 4)
    c = torch.complex(out.sent.u[:, 0::2], out.sent.u[:, 1::2]) / math.sqrt(2)
    null_part = out.sent.x - math.sqrt(NULL.beam_fraction) * out.sent.beam.w * c[..., None]
    leaked = torch.einsum("brt,bjt->bjr", h, null_part)  # what the null-space self-noise adds at its antennas
    assert float(leaked.abs().pow(2).mean()) < 1e-10 * float(null_part.abs().pow(2).sum(-1).mean())
    legit = out.views[LEGIT]
    # its noise per real dim is N0 / (beta sigma_1(H)^2): exactly the feedback that DiffSem's rule compensated ...
    expected = 10 ** (-2.0) / (NULL.beam_fraction * torch.linalg.svdvals(h.to(torch.complex128))[:, 0] ** 2)
    assert torch.allclose(legit.channel.sigma_c2.double(), expected, rtol=1e-4)  # the beam is stored in complex64
    # ... so every compensated frame is at level a, and the measured noise has that variance (128,000 symbols)
    compensated = expected <= 1 - A
    assert compensated.float().mean() > 0.8
    assert torch.allclose(legit.abar_eff[compensated], torch.full((int(compensated.sum()),), A), rtol=1e-4)
    assert abs(float(_residual(legit.channel.latent, out.sent.u, legit.channel.sigma_c2).var()) - 1.0) < 0.02


def test_one_transmit_antenna_is_todays_random_self_noise_over_flat_rayleigh() -> None:
    s = _latents(300)
    flat, gens = condition_links(K, 0, 10.0, T_STAR, [0.0], {"fading": "rayleigh"})
    today = send(s, T_STAR, ABAR, flat, gens)
    eve = eve_role(0.0)
    links, gens = _links(10.0, AntennaConfig(), {eve: AntennaConfig()})  # the same roles, the same seeds
    ours = send_antennas(s, T_STAR, ABAR, links, gens, NullSpaceConfig())
    assert torch.allclose(ours.sent.header.sigma_self2, today.header.sigma_self2, rtol=1e-6)
    assert torch.allclose(ours.sent.x[..., 0], torch.complex(today.x[:, 0::2], today.x[:, 1::2]) / math.sqrt(2), atol=1e-5)
    for name in (LEGIT, eve):
        assert torch.allclose(ours.views[name].z, today.views[name].z, atol=1e-4)
        assert torch.allclose(ours.views[name].abar_eff, today.views[name].abar_eff, rtol=1e-5)
    with pytest.raises(ConfigError, match="no null space"):
        send_antennas(s, T_STAR, ABAR, links, gens, NullSpaceConfig(null_space=True))


@pytest.mark.parametrize("n_rx", [1, 2, 8])
def test_an_eavesdroppers_combiner_reports_the_noise_it_leaves(n_rx: int) -> None:
    links, gens = _links(20.0, AntennaConfig(n_tx=4), {"eve": AntennaConfig(n_tx=4, n_rx=n_rx)})
    out = send_antennas(_latents(1000), T_STAR, ABAR, links, gens, NULL)
    eve = out.views["eve"]
    assert abs(float(_residual(eve.channel.latent, out.sent.u, eve.channel.sigma_c2).var()) - 1.0) < 0.03


def test_an_eavesdropper_with_more_antennas_than_the_null_space_has_dimensions_cancels_it() -> None:
    eves = {f"eve{n}": AntennaConfig(n_tx=4, n_rx=n) for n in (1, 4)}
    links, gens = _links(20.0, AntennaConfig(n_tx=4), eves)
    out = send_antennas(_latents(500), None, ABAR, links, gens, NULL)
    one, four = (float(out.views[f"eve{n}"].abar_eff.mean()) for n in (1, 4))
    # one antenna sees the self-noise at full strength (level about beta); four null its 3 dimensions
    assert one < 2 * NULL.beam_fraction < 0.2 < four
    assert float(out.views[LEGIT].abar_eff.mean()) > 0.8


def test_ls_csi_has_error_n0_per_entry_and_stale_csi_leaks_null_space_noise() -> None:
    ls = AntennaConfig(n_tx=4, estimator="ls", feedback_delay=4, speed_kmh=120.0)
    link = MimoLink(LinkConfig(snr_db=10.0), ls, torch.Generator().manual_seed(1))
    draw = link.draw(5000)
    err = link.feedback(draw) - draw.then
    assert abs(float(err.abs().pow(2).mean()) / 0.1 - 1.0) < 0.03  # LS: N0 = 0.1 per entry, 20,000 entries
    rho = (draw.h * draw.then.conj()).mean() / draw.then.abs().pow(2).mean()
    assert abs(float(rho.real) - ls.clarke_rho()) < 0.02 and ls.clarke_rho() < 0.9  # Clarke: J0(2 pi f_D 2 ms)
    links, gens = _links(20.0, ls, {})
    out = send_antennas(_latents(500), T_STAR, ABAR, links, gens, NULL)
    g, r = listener_channel(out.draws[LEGIT].h, out.sent.beam, out.sent.p_null, 0.01)
    assert float((r[..., 0, 0].real - 0.01).mean()) > 0.01  # leaked self-noise, more than the channel noise itself
    assert float(out.views[LEGIT].abar_eff.mean()) < A - 0.05


def test_an_eavesdroppers_correlation_with_the_legitimate_channel() -> None:
    eves = {"near": AntennaConfig(n_tx=4, n_rx=2, correlation=0.9)}
    links, gens = _links(20.0, AntennaConfig(n_tx=4), eves)
    legit = links[LEGIT].draw(5000)
    near = links["near"].draw(5000, legit)
    for i in range(2):
        c = (near.h[:, 0, i] * legit.h[:, 0, 0].conj()).mean() / legit.h.abs().pow(2).mean()
        assert abs(float(c.real) - 0.9) < 0.02
    assert abs(float(near.h.abs().pow(2).mean()) - 1.0) < 0.03
    with pytest.raises(ConfigError, match="needs the legitimate draw"):
        links["near"].draw(3)


def test_a_cdl_link_draws_unit_gain_reproducibly_from_its_own_generator() -> None:
    cdl = AntennaConfig(n_tx=4, n_rx=2, channel_model="CDL-C", feedback_delay=1)
    draws = [MimoLink(LinkConfig(), cdl, torch.Generator().manual_seed(3)).draw(100) for _ in range(2)]
    assert torch.equal(draws[0].h, draws[1].h) and draws[0].h.shape == (100, 1, 2, 4)
    assert 0.85 < float(draws[0].h.abs().pow(2).mean()) < 1.15  # omni elements: E|H_ij|^2 = 1


def test_per_symbol_channels_split_per_symbol() -> None:
    """The ofdm case: one channel matrix per symbol (per RE); quantised per-symbol feedback, exact CSI."""
    gen = torch.Generator().manual_seed(4)
    b, n0 = 200, 0.01
    h = torch.randn((b, K // 2, 1, 4), generator=gen, dtype=torch.complex64)
    sent = transmit_antennas(_latents(b), T_STAR, ABAR, h, n0, 0.0, NullSpaceConfig(beam_fraction=0.05, null_space=True),
                             4, gen)
    assert sent.header.sigma_self2.shape == (b, K) and sent.p_null.shape == (b, K // 2)
    noise = torch.randn((b, K // 2, 1), generator=gen, dtype=torch.complex64) * math.sqrt(n0)
    y = torch.einsum("bjrt,bjt->bjr", h, sent.x) + noise
    out = view(receive(y, *listener_channel(h, sent.beam, sent.p_null, n0)), sent.header)
    level = A / (A + sent.header.sigma_self2 + out.channel.sigma_c2)
    fine = sent.header.sigma_self2 > 0
    assert fine.float().mean() > 0.8
    assert float((level[fine] - A).abs().max()) < 0.02  # quantised to 0.5 dB steps
    assert abs(float(level[fine].mean()) - A) < 0.002
    assert abs(float(_residual(out.channel.latent, sent.u, out.channel.sigma_c2).var()) - 1.0) < 0.02


def test_keyed_beam_self_noise_is_removed_by_the_key_holder_and_the_null_space_still_hides_the_frame() -> None:
    """Keyed self-noise over antennas: the receiver, holding the key, removes the beam's eps_self and sees only its
    channel (level a / (a + sigma_c^2), above a); a one-antenna eavesdropper sees both self-noises, at exactly the
    level random self-noise leaves it (the same channels, header and null-space power)."""
    from diffsem.framepath import KeyedSender
    from diffsem.keyed import KeyedNoiseError, NonceSource

    s = _latents(400)
    levels = {}
    for mode in ("random", "keyed"):
        links, gens = _links(20.0, AntennaConfig(n_tx=4), {"eve": AntennaConfig(n_tx=4)})
        keyed = KeyedSender(bytes(range(32)), NonceSource(bytes(8))) if mode == "keyed" else None
        out = send_antennas(s, T_STAR, ABAR, links, gens, NULL, keyed=keyed)
        levels[mode] = {name: v.abar_eff for name, v in out.views.items()}
        if keyed is not None:
            legit = out.views[LEGIT]
            assert torch.allclose(legit.abar_eff, A / (A + legit.channel.sigma_c2), rtol=1e-5)
            with pytest.raises(KeyedNoiseError):  # a listener with another key learns it, and gets nothing
                view(legit.channel, out.sent.header, out.sent.keyed, bytes(32))
    compensated = levels["random"][LEGIT] > A - 1e-3  # random self-noise holds these frames at a exactly
    assert compensated.float().mean() > 0.8 and bool((levels["keyed"][LEGIT][compensated] > A).all())
    assert float(levels["keyed"][LEGIT].mean()) > A + 0.2  # about 0.7: only N0 / (beta |h|^2) is left
    assert torch.allclose(levels["keyed"]["eve"], levels["random"]["eve"])
    assert float(levels["keyed"]["eve"].mean()) < 2 * NULL.beam_fraction


@pytest.mark.parametrize(("make", "words"), [
    (lambda: build(AntennaConfig, n_tx=3), "n_tx=3 must be one of 1, 2, 4, 8"),
    (lambda: build(AntennaConfig, n_rx=9), "n_rx=9 must be an integer in [1, 8]"),
    (lambda: build(AntennaConfig, channel_model="CDL-F"), "unknown channel_model 'CDL-F'"),
    (lambda: build(AntennaConfig, correlation=1.5), "correlation=1.5 must be in [0, 1]"),
    (lambda: build(NullSpaceConfig, beam_fraction=0.0), "beam_fraction=0.0 must be in (0, 1]"),
    (lambda: NullSpaceConfig(null_space=True).check(1), "n_tx=1, n_rx=1: no null space"),
    (lambda: NullSpaceConfig(beam_fraction=0.5).check(4), "set null_space=true"),
])
def test_bad_antenna_settings_get_one_line_errors(make, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("csi", "words"), [
    (torch.zeros(4, 1, 1, 2, dtype=torch.complex64), "has shape (4, 1, 1, 2); expected (B=4, M=1 or 128, n_rx>=1, n_tx=4)"),
    (torch.zeros(4, 3, 1, 4, dtype=torch.complex64), "has shape (4, 3, 1, 4)"),
    (torch.zeros(4, 1, 1, 4), "must be a complex tensor"),
    (torch.full((4, 1, 1, 4), complex(float("nan"), 0)), "non-finite values"),
])
def test_csi_feedback_of_the_wrong_shape_or_not_finite_is_refused(csi: torch.Tensor, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        transmit_antennas(_latents(4), T_STAR, ABAR, csi, 0.01, 0.0, NULL, 4, torch.Generator())
    assert words in str(err.value)


@pytest.fixture(scope="module")
def antennas_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small `diffsem antennas eval`: n_tx 1 and 4, eavesdroppers with 1 and 4 antennas, 80 images."""
    from diffsem.cli import main

    out = tmp_path_factory.mktemp("antennas")
    args = ["antennas", "eval", "--n", "80", "--attacks", "feature-classifier,inversion-decoder", "--t-stars", "300",
            "--n-tx", "1,4", "--beam-fractions", "0.01", "--eve-rx", "1,4", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    return out


def test_antennas_eval_measures_the_keyless_gap_and_writes_its_report(antennas_run: Path) -> None:
    """Four transmit antennas open a gap that one does not, against a one-antenna eavesdropper at equal SNR; the
    report has both tables and the plot of the axis that was swept (the eavesdropper's antennas), not an empty one of
    the beam fraction (a single value here)."""
    res = json.loads((antennas_run / "antennas.json").read_text())
    assert res["config"]["n"] == 80 and {r["attack"] for r in res["rows"]} == {"feature-classifier", "inversion-decoder"}
    gap = {(r["n_tx"], r["eve_n_rx"]): r["secrecy_gap"] for r in res["rows"]}
    assert gap[(4, 1)] > 0.4 > 0.15 > gap[(1, 1)]  # t* = 300 at 20 dB: about 98% against about 27% (4) or 97% (1)
    assert gap[(4, 4)] < gap[(4, 1)] - 0.2  # an eavesdropper with n_tx antennas nulls the 3-dimensional null space
    assert "## Secrecy gap" in (antennas_run / "antennas.md").read_text()
    assert (antennas_run / "gap_vs_eve_antennas.png").stat().st_size > 1000
    assert not (antennas_run / "acc_vs_beam_fraction.png").exists()


def test_antennas_report_joins_runs_of_the_same_conditions(antennas_run: Path, tmp_path: Path, cli) -> None:
    """`diffsem antennas report` of a run split in two (by the eavesdroppers' antennas) gives the run's gap table."""
    from diffsem.antenna_eval import gap_table

    res = json.loads((antennas_run / "antennas.json").read_text())
    for n_rx in (1, 4):
        part = {"config": res["config"], "rows": [r for r in res["rows"] if r["eve_n_rx"] == n_rx]}
        (tmp_path / f"{n_rx}.json").write_text(json.dumps(part))
    assert cli("antennas", "report", str(tmp_path / "1.json"), str(tmp_path / "4.json"), "--out", str(tmp_path)).code == 0
    joined = json.loads((tmp_path / "antennas.json").read_text())["rows"]
    assert set(gap_table(joined).splitlines()) == set(gap_table(res["rows"]).splitlines())
    assert cli("antennas", "report", str(tmp_path / "nope.json"), "--out", str(tmp_path)).err.startswith(
        "diffsem: error: no such results file")


@pytest.mark.parametrize(("option", "words"), [
    (["--n-tx", "3"], "n_tx=3 must be one of 1, 2, 4, 8"),
    (["--csi", "ls:x"], "use ESTIMATOR:DELAY"),
    (["--eve-offsets", "inf"], "must be finite numbers of dB"),
    (["--channel-model", "TDL-A"], "channel_model 'TDL-A' does not exist on phy=flat"),
    (["--phy", "ofdm", "--channel-model", "rayleigh"], "channel_model 'rayleigh' does not exist on phy=ofdm"),
])
def test_antennas_eval_bad_input_is_one_line(option: list[str], words: str, tmp_path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from diffsem.cli import main

    assert main(["antennas", "eval", "--n", "10", "--out", str(tmp_path), *option]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and not (tmp_path / "antennas.json").exists()
