"""Live multi-antenna links (issue 22; docs/design.md §5, live antennas): the emulator as a real gRPC server draws the
legitimate link's channel matrices and CSI at ``Feedback``, carries the transmitter's antenna signals over every
link and combines them per listener exactly as the core does offline; the legitimate CSI reaches the transmitter
only; bad antenna settings are refused with the settings in force kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
import torch
from test_svc_emulator import EVE, LEGIT, Emu, Reader, attached, start_emulator

from diffsem.antenna_path import Precoded, receive, transmit_antennas
from diffsem.config import LinkConfig
from diffsem.errors import ConfigError
from diffsem.phy.antennas import AntennaConfig, MimoDraw, MimoLink
from diffsem.phy.nullspace import listener_channel
from diffsem.seeds import derive_seed
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import frame_pb2
from services_common.errors import BadRequest
from services_common.frames import antenna_rows, header_to_proto
from services_common.tensors import rows_to_proto, to_numpy
from transmitter.csi import CsiSource, antenna_csi

K, B = 256, 8
ABAR = torch.linspace(0.9999, 0.0005, 1000, dtype=torch.float64)  # a schedule; the rule needs only abar[t*]
SPLIT = dict(n_tx=4, null_space=True, beam_fraction=0.05)


def running(phy: pb.LinkSettings | None = None) -> Iterator[Emu]:
    e, host = start_emulator(phy=phy)
    yield e
    for ch in e.channels:
        ch.close()
    host.stop(0.5)


@pytest.fixture()
def emu() -> Iterator[Emu]:
    yield from running()


@pytest.fixture()
def ofdm_emu() -> Iterator[Emu]:
    """Every link ofdm at the core's defaults: TDL-A, a 14 x 12 grid, LS CSI fed back per RE one frame late."""
    yield from running(pb.LinkSettings(phy="ofdm"))


def configure(e: Emu, name: str, role: int = 0, **antennas: object) -> None:
    seed = antennas.pop("seed", None)
    settings = pb.LinkSettings(antennas=pb.AntennaSettings(**antennas))
    if seed is not None:
        settings.seed = seed
    e.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name=name, role=role, settings=settings)]),
                        timeout=10)


def latents(rfs: list[frame_pb2.ReceivedFrame]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in rfs])


def send_precoded(e: Emu, s: torch.Tensor, t_star: int | None, gen: torch.Generator) -> pb.FeedbackReply:
    """What the transmitter does per batch: Feedback, precode on that CSI, Send the antenna signals."""
    reply = e.tx.Feedback(pb.FeedbackRequest(frames=s.shape[0]), timeout=10)
    fb = antenna_csi(reply, s.shape[0])
    sent = transmit_antennas(s, t_star, ABAR, fb.csi, fb.n0, fb.csi_error, fb.split, fb.n_tx, gen)
    rows = rows_to_proto(antenna_rows(sent.x))
    now = time.time()
    e.tx.Send(pb.SendRequest(frames=[frame_pb2.Frame(message_id=f"m{i}", seq=i, symbols=rows[i],
                                                     header=header_to_proto(sent.header, i, "m", now))
                                     for i in range(s.shape[0])]), timeout=10)
    return reply


def unit_latents(n: int, seed: int = 0) -> torch.Tensor:
    s = torch.randn(n, K, generator=torch.Generator().manual_seed(seed))
    return s / s.pow(2).mean(1, keepdim=True).sqrt()


def one_seeded_batch(emu: Emu, eve_antennas: pb.AntennaSettings, **receiver: object
                     ) -> tuple[Reader, Reader, torch.Tensor, pb.FeedbackReply]:
    """The receiver (seed 11, SPLIT and ``receiver``'s antenna settings) and an eavesdropper ``eve`` (seed 12,
    ``eve_antennas``) attached; one batch of B unit latents precoded at t* = 300 and read by both."""
    configure(emu, "receiver", seed=11, **SPLIT, **receiver)
    rx = Reader(emu, LEGIT, "receiver")
    eve = Reader(emu, EVE, "eve", seed=12, antennas=eve_antennas)
    attached(emu, "receiver")
    attached(emu, "eve")
    s = unit_latents(B)
    reply = send_precoded(emu, s, 300, torch.Generator().manual_seed(5))
    rx.wait(B)
    eve.wait(B)
    return rx, eve, s, reply


def test_every_listener_gets_the_cores_lmmse_combined_frame_of_its_own_channel(emu: Emu) -> None:
    """n_tx = 4 with null-space self-noise; the receiver (1 antenna, 10 dB) and an eavesdropper (2 antennas, 5 dB),
    seeded: what each gets is what the core's MimoLink, listener_channel and LMMSE receive give offline, frame for
    frame, and the transmitter's CSI is exactly the legitimate link's drawn-ahead feedback."""
    rx, eve, s, reply = one_seeded_batch(emu, pb.AntennaSettings(n_rx=2))

    legit = MimoLink(LinkConfig(snr_db=10.0), AntennaConfig(n_tx=4),
                     torch.Generator().manual_seed(derive_seed(11, "antennas")))
    draw = legit.draw(B)
    csi = legit.feedback(draw)
    assert reply.phy == "antennas" and (reply.n_tx, reply.n_rx) == (4, 1)
    assert torch.equal(torch.view_as_complex(torch.tensor(list(reply.csi)).reshape(B, 1, 1, 4, 2)), csi)
    split = antenna_csi(reply, B).split
    sent = transmit_antennas(s, 300, ABAR, csi, legit.n0, 0.0, split, 4, torch.Generator().manual_seed(5))
    eve_link = MimoLink(LinkConfig(snr_db=5.0), AntennaConfig(n_tx=4, n_rx=2),
                        torch.Generator().manual_seed(derive_seed(12, "antennas")))
    eve_draw = eve_link.draw(B)
    for reader, link, d in ((rx, legit, draw), (eve, eve_link, eve_draw)):
        g, r = listener_channel(d.h, sent.beam, sent.p_null, link.n0)
        want = receive(link.carry(sent.x, d), g, r)
        got = reader.got[:B]
        assert all(len(rf.frame.symbols.data) == 4 * K for rf in got)  # k float32 values: combined, not n_tx streams
        assert torch.allclose(latents(got), want.latent, atol=1e-4)
        assert [rf.sigma2 for rf in got] == pytest.approx(want.sigma_c2.tolist(), rel=1e-4)
    # the gap the antennas make: the legitimate receiver sees the beam, the eavesdropper the null-space self-noise
    mean = [sum(rf.sigma2 for rf in r.got) / B for r in (rx, eve)]
    assert mean[1] > 5 * mean[0], mean


def assert_the_cores_frames(listeners: tuple[tuple[Reader, MimoLink, MimoDraw], ...], sent: Precoded) -> None:
    """Each (reader, core link, its draw): the reader's first B frames are what the core's carry, listener channel
    and LMMSE receive give for the precoded batch ``sent`` over that draw."""
    for reader, link, d in listeners:
        g, r = listener_channel(d.h, sent.beam, sent.p_null, link.n0)
        want = receive(link.carry(sent.x, d), g, r)
        assert torch.allclose(latents(reader.got[:B]), want.latent, atol=1e-4)
        assert [rf.sigma2 for rf in reader.got[:B]] == pytest.approx(want.sigma_c2.tolist(), rel=1e-4)


def test_estimated_delayed_csi_and_a_correlated_eavesdropper_give_the_cores_frames(emu: Emu) -> None:
    """The receiver feeds back LS-estimated CSI one frame late at 3 km/h; an eavesdropper's channel is correlated
    (rho = 0.9) with the receiver's. Seeded, what each listener gets is the core's (MimoLink with the same
    AntennaConfig, the eavesdropper drawn against the receiver's draw of the same frames), frame for frame, and the
    transmitter is told the CSI's error variance."""
    csi_settings = dict(estimator="ls", feedback_delay=1, speed_kmh=3.0)
    rx, eve, s, reply = one_seeded_batch(emu, pb.AntennaSettings(correlation=0.9), **csi_settings)

    legit = MimoLink(LinkConfig(snr_db=10.0), AntennaConfig(n_tx=4, **csi_settings),
                     torch.Generator().manual_seed(derive_seed(11, "antennas")))
    draw = legit.draw(B)
    csi = legit.feedback(draw)
    assert torch.equal(torch.view_as_complex(torch.tensor(list(reply.csi)).reshape(B, 1, 1, 4, 2)), csi)
    assert reply.csi_error == pytest.approx(legit.n0) and not torch.equal(csi, draw.h)  # estimated and aged
    split = antenna_csi(reply, B).split
    sent = transmit_antennas(s, 300, ABAR, csi, legit.n0, legit.n0, split, 4, torch.Generator().manual_seed(5))
    eve_link = MimoLink(LinkConfig(snr_db=5.0), AntennaConfig(n_tx=4, correlation=0.9),
                        torch.Generator().manual_seed(derive_seed(12, "antennas")))
    eve_draw = eve_link.draw(B, draw)
    assert_the_cores_frames(((rx, legit, draw), (eve, eve_link, eve_draw)), sent)
    links = emu.links()
    assert (links["receiver"].settings.antennas.estimator, links["receiver"].settings.antennas.feedback_delay) == \
        ("ls", 1)
    assert links["eve"].settings.antennas.correlation == pytest.approx(0.9)
    assert not links["eve"].settings.antennas.HasField("estimator")  # the receiver's CSI, not the eavesdropper's


def test_a_cdl_channel_set_on_the_receiver_is_every_links_and_gives_the_cores_frames(emu: Emu) -> None:
    """antennas.channel_model = CDL-C on the legitimate link: the receiver's channel and a two-antenna eavesdropper's
    are each their own CDL-C draw, as the core's MimoLink draws them with the same seeds, frame for frame."""
    rx, eve, s, reply = one_seeded_batch(emu, pb.AntennaSettings(n_rx=2), channel_model="CDL-C")

    legit = MimoLink(LinkConfig(snr_db=10.0), AntennaConfig(n_tx=4, channel_model="CDL-C"),
                     torch.Generator().manual_seed(derive_seed(11, "antennas")))
    draw = legit.draw(B)
    csi = legit.feedback(draw)
    assert torch.equal(torch.view_as_complex(torch.tensor(list(reply.csi)).reshape(B, 1, 1, 4, 2)), csi)
    sent = transmit_antennas(s, 300, ABAR, csi, legit.n0, 0.0, antenna_csi(reply, B).split, 4,
                             torch.Generator().manual_seed(5))
    eve_link = MimoLink(LinkConfig(snr_db=5.0), AntennaConfig(n_tx=4, n_rx=2, channel_model="CDL-C"),
                        torch.Generator().manual_seed(derive_seed(12, "antennas")))
    eve_draw = eve_link.draw(B)
    rayleigh = MimoLink(LinkConfig(snr_db=5.0), AntennaConfig(n_tx=4, n_rx=2),
                        torch.Generator().manual_seed(derive_seed(12, "antennas"))).draw(B)
    assert not torch.allclose(eve_draw.h, rayleigh.h)  # CDL-C draws, not i.i.d. Rayleigh ones
    assert_the_cores_frames(((rx, legit, draw), (eve, eve_link, eve_draw)), sent)
    links = emu.links()
    assert links["receiver"].settings.antennas.channel_model == links["eve"].settings.antennas.channel_model == "CDL-C"


def test_on_ofdm_every_listener_gets_the_cores_per_re_combined_frames_batch_after_batch(ofdm_emu: Emu) -> None:
    """n_tx = 4 with per-RE null-space self-noise on ofdm TDL-A links (LS CSI fed back per RE one frame late); the
    receiver (1 antenna, 10 dB) and an eavesdropper (2 antennas, 5 dB), seeded, over two batches: what each gets is
    what the core's MimoLink (one per link, its grid's frame clock running on from batch to batch), transmit_antennas,
    listener_channel and LMMSE receive give offline, frame for frame and RE for RE, and the transmitter's CSI is the
    legitimate link's per-RE feedback with its LS error per RE."""
    configure(ofdm_emu, "receiver", seed=11, **SPLIT)
    rx = Reader(ofdm_emu, LEGIT, "receiver")
    eve = Reader(ofdm_emu, EVE, "eve", seed=12, antennas=pb.AntennaSettings(n_rx=2))
    attached(ofdm_emu, "receiver")
    attached(ofdm_emu, "eve")
    s = unit_latents(2 * B)
    live_tx, core_tx = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    legit = MimoLink(LinkConfig(snr_db=10.0, phy="ofdm"), AntennaConfig(n_tx=4),
                     torch.Generator().manual_seed(derive_seed(11, "antennas")), K)
    eve_link = MimoLink(LinkConfig(snr_db=5.0, phy="ofdm"), AntennaConfig(n_tx=4, n_rx=2),
                        torch.Generator().manual_seed(derive_seed(12, "antennas")), K)
    draws = []
    for n in range(2):
        reply = send_precoded(ofdm_emu, s[n * B:(n + 1) * B], 300, live_tx)
        draw = legit.draw(B)
        csi = legit.feedback(draw)
        draws.append(draw)
        assert (reply.n_tx, reply.n_rx, reply.channel_uses) == (4, 1, K // 2)
        assert torch.equal(torch.view_as_complex(torch.tensor(list(reply.csi)).reshape(B, K // 2, 1, 4, 2)), csi)
        assert torch.equal(torch.tensor(list(reply.csi_error_re)), legit.csi_error)  # N0 e(RE): LS on the grid
        sent = transmit_antennas(s[n * B:(n + 1) * B], 300, ABAR, csi, legit.n0, legit.csi_error,
                                 antenna_csi(reply, B).split, 4, core_tx)
        assert sent.p_null is not None and sent.p_null.shape == (B, K // 2)  # per RE
        rx.wait((n + 1) * B)
        eve.wait((n + 1) * B)
        for reader, link, d in ((rx, legit, draw), (eve, eve_link, eve_link.draw(B, draw))):
            g, r = listener_channel(d.h, sent.beam, sent.p_null, link.n0)
            want = receive(link.carry(sent.x, d), g, r)
            got = reader.got[n * B:(n + 1) * B]
            assert torch.allclose(latents(got), want.latent, atol=1e-4)
            assert torch.tensor([list(rf.sigma2_re) for rf in got]) == \
                pytest.approx(want.sigma_c2[:, 0::2], rel=1e-4)  # the LMMSE noise per RE
            assert all(rf.frame.header.csi == bytes(sent.header.csi.symbol_codes()[i].tolist())
                       for i, rf in enumerate(got))
    # the second batch continues the first's channel (3 km/h over 0.5 ms frames): what the agreement held live
    h1, h2 = draws[0].h[-1], draws[1].h[0]
    assert float((h2 - h1).abs().pow(2).mean()) < 0.01 * float(h1.abs().pow(2).mean())
    median = [float(torch.tensor([list(rf.sigma2_re) for rf in r.got]).median()) for r in (rx, eve)]
    # the null-space self-noise reaches the eavesdropper (5 dB lower, 2 antennas): 4.3 against the receiver's 1.5,
    # whose LS CSI one frame old lets some of it through (csi_leak)
    assert median[1] > 2 * median[0], median


@pytest.mark.parametrize("updates,words", [
    ({"eve": dict(phy="flat")}, "eve use phy='flat': set phy='ofdm' on every link"),
    ({"eve": dict(fft_size=24)}, "eve has fft_size=24 (the legitimate link's is 12)"),
    ({"eve": dict(pilot_symbols=[2])}, "eve has pilot_symbols=(2,) (the legitimate link's is (2, 11))"),
    ({"receiver": dict(feedback="subband")}, "the legitimate link needs feedback='re' (per-RE CSI), not 'subband'"),
    ({"receiver": dict(fft_size=24)}, "eve has fft_size=12 (the legitimate link's is 24)"),
    ({"receiver": dict(antennas=pb.AntennaSettings(estimator="perfect", feedback_delay=0))},
     "set estimator, feedback_delay on the link itself (not under antennas)"),
    ({"receiver": dict(antennas=pb.AntennaSettings(channel_model="CDL-C"))}, "set channel_model on the link itself"),
])
def test_ofdm_antennas_need_one_phy_one_grid_and_per_re_feedback(ofdm_emu: Emu, updates: dict, words: str) -> None:
    """With n_tx > 1 on an ofdm legitimate link the transmitter precodes per RE of its grid: a link on another phy or
    grid, or per-subband CSI, is INVALID_ARGUMENT naming the field and what is accepted; the settings stay."""
    configure(ofdm_emu, "receiver", **SPLIT)
    configure(ofdm_emu, "eve", EVE, n_rx=2)
    before = {n: lk.settings for n, lk in ofdm_emu.links().items()}
    with pytest.raises(grpc.RpcError) as err:
        ofdm_emu.control.Configure(pb.ConfigureRequest(links=[
            pb.LinkUpdate(name=name, settings=pb.LinkSettings(**settings)) for name, settings in updates.items()]),
            timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details(), \
        err.value.details()
    assert {n: lk.settings for n, lk in ofdm_emu.links().items()} == before
    # what the state shows of the antennas is what is used: no antenna CSI or channel fields on an ofdm link
    assert not any(before["receiver"].antennas.HasField(f) for f in ("estimator", "feedback_delay", "channel_model"))
    # an eavesdropper's own channel on the same grid is its own business
    ofdm_emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="eve", settings=pb.LinkSettings(
        channel_model="TDL-C", speed_kmh=60.0, delay_spread_ns=300.0))]), timeout=10)
    assert ofdm_emu.links()["eve"].settings.channel_model == "TDL-C"


def test_stale_csi_leaks_the_null_space_self_noise_into_the_legitimate_receiver(emu: Emu) -> None:
    """The same frames and draws with the CSI fed back 8 frames late at 120 km/h (Clarke's correlation -0.23)
    instead of exactly: the beam and the null space miss the channel, so the receiver's combined noise grows."""
    s = unit_latents(B)
    configure(emu, "receiver", seed=21, **SPLIT)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    mean_sigma2 = []
    for n, csi_settings in enumerate((dict(feedback_delay=0), dict(feedback_delay=8, speed_kmh=120.0))):
        configure(emu, "receiver", seed=21, **csi_settings)  # the same seed: the same channels and noise
        send_precoded(emu, s, 300, torch.Generator().manual_seed(5))
        rx.wait((n + 1) * B)
        mean_sigma2.append(sum(rf.sigma2 for rf in rx.got[n * B:(n + 1) * B]) / B)
    assert mean_sigma2[1] > 3 * mean_sigma2[0], mean_sigma2


def test_an_eavesdropper_never_receives_the_legitimate_csi(emu: Emu) -> None:
    """From the attacker's position, with its own valid credential: it may not ask for the legitimate link's CSI or
    read the emulator's state, and what it listens to carries only its own combined frame and noise level."""
    configure(emu, "receiver", **SPLIT)
    eve = Reader(emu, EVE, "eve")
    attached(emu, "eve")
    own = emu.stub("eavesdropper", "eve")
    for call in (lambda: own.Feedback(pb.FeedbackRequest(frames=B), timeout=5),
                 lambda: own.Feedback(pb.FeedbackRequest(link="eve", frames=B), timeout=5),
                 lambda: own.GetState(pb.GetStateRequest(), timeout=5)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = send_precoded(emu, unit_latents(B), None, torch.Generator().manual_seed(1))
    eve.wait(B)
    legit_csi = set(reply.csi)
    for rf in eve.got:
        fields = {f.name for f, _ in rf.ListFields()} | {f.name for f, _ in rf.frame.ListFields()}
        assert fields <= {"link", "role", "snr_db", "has_csi", "frame", "sigma2", "gain_re", "gain_im",
                          "deliver_time", "message_id", "seq", "symbols", "header", "erased", "queue_drops"}, fields
        assert rf.frame.header.csi == b""  # the header carries no channel either
        assert not legit_csi & set(to_numpy(rf.frame.symbols).tolist())
        assert not legit_csi & {rf.gain_re, rf.gain_im, rf.sigma2}


@pytest.mark.parametrize("name,role,antennas,code,words", [
    ("receiver", 0, dict(n_tx=3), "INVALID_ARGUMENT", "n_tx=3 must be one of 1, 2, 4, 8"),
    ("receiver", 0, dict(n_rx=9), "INVALID_ARGUMENT", "n_rx=9 must be an integer in [1, 8]"),
    ("receiver", 0, dict(n_tx=1, null_space=True), "INVALID_ARGUMENT", "(n_tx=1, n_rx=1: no null space)"),
    ("receiver", 0, dict(n_rx=4), "INVALID_ARGUMENT", "(n_tx=4, n_rx=4: no null space)"),
    ("receiver", 0, dict(beam_fraction=0.0), "INVALID_ARGUMENT", "beam_fraction=0.0 must be in (0, 1]"),
    ("receiver", 0, dict(null_space=False), "INVALID_ARGUMENT", "set null_space=true, or beam_fraction=1"),
    ("eve", EVE, dict(n_tx=2), "INVALID_ARGUMENT", "antennas.n_tx belongs to the transmitter"),
    ("eve", EVE, dict(n_rx=0), "INVALID_ARGUMENT", "n_rx=0 must be an integer in [1, 8]"),
    ("receiver", 0, dict(estimator="mmse"), "INVALID_ARGUMENT", "'perfect' or 'ls'"),
    ("receiver", 0, dict(feedback_delay=65), "INVALID_ARGUMENT", "feedback_delay=65 must be in [0, 64]"),
    ("receiver", 0, dict(speed_kmh=float("nan")), "INVALID_ARGUMENT", "speed_kmh"),
    ("receiver", 0, dict(correlation=0.5), "INVALID_ARGUMENT", "antennas.correlation=0.5 is an eavesdropper's"),
    ("eve", EVE, dict(correlation=1.5), "INVALID_ARGUMENT", "correlation=1.5 must be in [0, 1]"),
    ("eve", EVE, dict(estimator="ls", feedback_delay=2), "INVALID_ARGUMENT",
     "antennas.estimator, antennas.feedback_delay belong to the transmitter and the legitimate receiver"),
    ("receiver", 0, dict(channel_model="CDL-F"), "INVALID_ARGUMENT", "unknown channel_model 'CDL-F'"),
    ("eve", EVE, dict(channel_model="CDL-A"), "INVALID_ARGUMENT", "antennas.channel_model belongs to the transmitter"),
])
def test_bad_antenna_settings_are_refused_and_the_settings_in_force_stay(emu: Emu, name: str, role: int,
                                                                         antennas: dict, code: str,
                                                                         words: str) -> None:
    configure(emu, "receiver", **SPLIT)
    configure(emu, "eve", EVE, n_rx=2)
    before = {n: lk.settings.antennas for n, lk in emu.links().items()}
    with pytest.raises(grpc.RpcError) as err:
        configure(emu, name, role, **antennas)
    assert err.value.code().name == code and words in err.value.details(), err.value.details()
    assert {n: lk.settings.antennas for n, lk in emu.links().items()} == before


def test_multi_antenna_links_share_the_legitimate_links_phy_and_a_send_must_follow_its_feedback(emu: Emu) -> None:
    configure(emu, "receiver", **SPLIT)
    with pytest.raises(grpc.RpcError) as err:
        emu.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name="eve", role=EVE, settings=pb.LinkSettings(
            phy="ofdm"))]), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "set phy='flat'" in err.value.details()
    assert "eve" not in emu.links()
    rows = rows_to_proto(torch.zeros(2, 4 * K))
    with pytest.raises(grpc.RpcError) as err:
        emu.tx.Send(pb.SendRequest(frames=[frame_pb2.Frame(message_id=f"m{i}", symbols=rows[i]) for i in range(2)]),
                    timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "must follow the Feedback" in err.value.details()
    configure(emu, "receiver", n_tx=1, null_space=False, beam_fraction=1.0)  # back to one antenna: today's flat link
    assert emu.tx.Feedback(pb.FeedbackRequest(frames=2), timeout=5).phy == "flat"


class FakeEmulator:
    """The emulator's Feedback as a transmitter sees it, with a reply the test chooses (a broken or hostile peer)."""

    def __init__(self, reply: pb.FeedbackReply):
        self.reply = reply

    def Feedback(self, request: pb.FeedbackRequest, timeout: float) -> pb.FeedbackReply:  # noqa: N802 - gRPC's name
        return self.reply


def good_reply(b: int) -> pb.FeedbackReply:
    h = torch.randn(b, 1, 1, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    return pb.FeedbackReply(phy="antennas", frames=b, n_tx=4, n_rx=1, csi=torch.view_as_real(h).reshape(-1).tolist(),
                            n0=0.01, beam_fraction=0.05, null_space=True, sigma_c2=0.1)


@pytest.mark.parametrize("change,error,words", [
    (dict(csi=[0.0] * 10), BadRequest, "has 10 values for 4 frames of n_rx=1 x n_tx=4"),
    (dict(n_rx=0), BadRequest, "n_rx=0"),
    (dict(csi=[float("nan")] + [0.5] * 31), ConfigError, "non-finite values"),
    (dict(csi=[float("inf")] * 32), ConfigError, "non-finite values"),
    (dict(beam_fraction=1.5), ConfigError, "beam_fraction=1.5 must be in (0, 1]"),
    (dict(channel_uses=2), BadRequest, "has 32 values for 4 frames of n_rx=1 x n_tx=4 on 2 channel uses each"),
    (dict(channel_uses=3, csi=[0.5] * 96), ConfigError, "expected (B=4, M=1 or 128, n_rx>=1, n_tx=4)"),
    (dict(csi_error_re=[0.01]), BadRequest, "1 per-RE error variances for 1 channel uses"),
    (dict(channel_uses=128, csi=[0.5] * 4096, csi_error_re=[0.01] * 127), BadRequest,
     "127 per-RE error variances for 128 channel uses"),
    (dict(channel_uses=128, csi=[0.5] * 4096, csi_error_re=[-0.01] * 128), BadRequest, "not finite and >= 0"),
    (dict(csi_error=float("nan")), BadRequest, "not finite and >= 0"),
])
def test_malformed_csi_feedback_is_refused_at_the_transmitter_and_nothing_is_precoded(change: dict, error: type,
                                                                                       words: str) -> None:
    """A multi-antenna transmitter checks its CSI at the core's door (diffsem.phy.nullspace.check_csi) before it
    draws any self-noise: a reply of the wrong shape or with non-finite values raises and leaves the generator as it
    was."""
    reply = good_reply(4)
    for f, v in change.items():
        if f in ("csi", "csi_error_re"):
            del getattr(reply, f)[:]
            getattr(reply, f).extend(v)
        else:
            setattr(reply, f, v)
    gen = torch.Generator().manual_seed(3)
    with pytest.raises(error) as err:
        fb = CsiSource(FakeEmulator(reply), "receiver", K).for_frames(4)  # type: ignore[arg-type]
        transmit_antennas(unit_latents(4), None, ABAR, fb.csi, fb.n0, fb.csi_error, fb.split, fb.n_tx, gen)
    assert words in str(err.value), str(err.value)
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(3).get_state())



def test_scenario_presets_expand_before_the_command_line_which_wins() -> None:
    from launcher.__main__ import config_from, parse_args
    from launcher.scenarios import expand

    cfg = config_from(parse_args(["--scenario", "antennas", "--beam-fraction", "0.02"]))
    assert (cfg.n_tx, cfg.null_space, cfg.beam_fraction, cfg.snr_db) == (4, True, 0.02, 20.0)
    assert [(e.name, e.snr_offset_db, e.n_rx) for e in cfg.eavesdroppers] == [("eve", 0.0, None)]
    cfg = config_from(parse_args(["--scenario=keyed", "-e", "x:feature-classifier:-3:2"]))
    assert cfg.self_noise == "keyed" and cfg.t_star == 700
    assert [(e.name, e.snr_offset_db, e.n_rx) for e in cfg.eavesdroppers] == [("x", -3.0, 2)]  # its own, not the preset's
    assert expand(["--ports", "0"], "snr-advantage")[-2:] == ["--ports", "0"]  # $DIFFSEM_SCENARIO's default
    with pytest.raises(ValueError, match="unknown scenario 'nope'; use one of equal-snr, snr-advantage, keyed, antennas"):
        expand(["--scenario", "nope"])


def test_every_scenario_setting_is_an_option_of_a_service_and_every_preset_starts_the_launcher() -> None:
    """A misspelt setting would be silently ignored by every service ($DIFFSEM_SCENARIO) and refused by the
    launcher; one table serves both (services_common/scenarios.py)."""
    from launcher.__main__ import config_from, parse_args
    from launcher.specs import SPECS
    from services_common.scenarios import SCENARIOS

    options = {o.dest for spec in SPECS for o in spec.options}
    for name, preset in SCENARIOS.items():
        assert set(preset.settings) <= options, name
        cfg = config_from(parse_args(["--scenario", name]))
        assert cfg.snr_db == float(preset.settings["snr_db"]) and cfg.t_star == int(preset.settings["t_star"]), name
        assert [e.snr_offset_db for e in cfg.eavesdroppers] == [float(preset.settings["eve_snr_offset_db"])], name


def test_eavesdropper_antennas_on_the_command_lines() -> None:
    from channel_emulator.__main__ import eavesdropper_links
    from launcher.stack import EveSpec, eve_link

    assert [eve_link(EveSpec.parse(t)) for t in ("e:feature-classifier:0:4", "e::-3", "e::", "e:::2")] == \
        ["e=0:4", "e=-3", None, "e=:2"]
    with pytest.raises(ValueError, match="receive antennas 'x' must be an integer 1 to 8"):
        EveSpec.parse("e:feature-classifier:0:x")
    links = eavesdropper_links(["a=0:4", "b=:2", "c=-5"])
    assert (links["a"].snr_offset_db, links["a"].antennas.n_rx, links["b"].HasField("snr_offset_db"),
            links["b"].antennas.n_rx, links["c"].antennas.HasField("n_rx")) == (0.0, 4, False, 2, False)
    with pytest.raises(BadRequest, match="NAME=OFFSET_DB:N_RX"):
        eavesdropper_links(["a=0:x"])


def test_the_flat_array_options_are_refused_on_an_ofdm_emulator_and_kept_out_of_its_antennas() -> None:
    """`--phy ofdm --n-tx 4` takes the CSI and the channel from the link's own options: the flat array's
    --csi-estimator and --antenna-channel would be ignored there, so they are refused at start-up, naming the option to
    use; at their defaults (what the launcher passes) the antennas carry only the counts and the split."""
    from channel_emulator.__main__ import antenna_settings
    from channel_emulator.settings import SPEC

    ok = antenna_settings(SPEC.parse(["--phy", "ofdm", "--n-tx", "4", "--null-space", "--csi-estimator", "perfect"]))
    assert {f.name for f, _ in ok.ListFields()} == {"n_tx", "n_rx", "null_space", "beam_fraction"}
    with pytest.raises(BadRequest, match=r"--csi-estimator \(use --estimator\), --antenna-channel \(use "
                                         r"--channel-model\): on --phy ofdm"):
        antenna_settings(SPEC.parse(["--phy", "ofdm", "--n-tx", "4", "--csi-estimator", "ls",
                                     "--antenna-channel", "CDL-C"]))
    flat = antenna_settings(SPEC.parse(["--n-tx", "4", "--antenna-channel", "CDL-C"]))
    assert (flat.channel_model, flat.estimator) == ("CDL-C", "perfect")
