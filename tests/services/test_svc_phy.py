"""The emulator's physical layers, live: the PHY settings in the one link schema, ``ofdm`` links through the
core, the transmitter's CSI feedback drawn ahead of its frames, and switching a live link between flat and ofdm.

A real emulator in this process (the helpers of ``test_svc_emulator``), compared with the core's own
:class:`diffsem.phy.Link` run offline from the same seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from svc_helpers import wait_until
from test_svc_emulator import EVE, LEGIT, Emu, Reader, attached, frames, start_emulator

from diffsem.config import LinkConfig
from diffsem.phy import Link
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from services_common.frames import received_batch
from services_common.tensors import to_numpy

OFDM = {"phy": "ofdm", "channel_model": "TDL-A", "delay_spread_ns": 100.0, "speed_kmh": 3.0}


@pytest.fixture()
def emu(tmp_path: Path) -> Iterator[Emu]:
    e, host = start_emulator()
    yield e
    for ch in e.channels:
        ch.close()
    host.stop(0.5)


def configure(e: Emu, name: str = "receiver", role: int = 0, **settings: object) -> None:
    e.control.Configure(pb.ConfigureRequest(links=[pb.LinkUpdate(name=name, role=role,
                                                                 settings=pb.LinkSettings(**settings))]), timeout=10)


@pytest.mark.parametrize("settings,code,words", [
    ({"channel_model": "TDL-Z"}, grpc.StatusCode.INVALID_ARGUMENT, "channel_model='TDL-Z' is not one of TDL-A"),
    ({"phy": "5g"}, grpc.StatusCode.INVALID_ARGUMENT, "phy='5g' is not one of flat, ofdm"),
    ({"delay_spread_ns": 0.0}, grpc.StatusCode.OUT_OF_RANGE, "delay_spread_ns=0.0 ns is out of range"),
    ({"delay_spread_ns": 1e6}, grpc.StatusCode.OUT_OF_RANGE, "delay_spread_ns=1000000.0 ns is out of range"),
    ({"speed_kmh": -1.0}, grpc.StatusCode.OUT_OF_RANGE, "speed_kmh=-1.0 km/h is out of range [0, 500]"),
    ({"fft_size": 4}, grpc.StatusCode.INVALID_ARGUMENT, "has 48 data REs; a frame of k=256 real values needs 128"),
    ({"pilot_symbols": [2, 20]}, grpc.StatusCode.INVALID_ARGUMENT, "pilot_symbols=[2, 20] must be distinct"),
    ({"subcarrier_spacing_khz": 20.0}, grpc.StatusCode.INVALID_ARGUMENT, "is not one of 15, 30, 60, 120, 240"),
])
def test_bad_phy_settings_are_refused_by_the_emulator_and_the_previous_ones_stay(
        emu: Emu, settings: dict[str, object], code: grpc.StatusCode, words: str) -> None:
    configure(emu, **OFDM)
    before = emu.links()["receiver"].settings
    for validate_only in (True, False):
        with pytest.raises(grpc.RpcError) as err:
            emu.control.Configure(pb.ConfigureRequest(validate_only=validate_only, links=[pb.LinkUpdate(
                name="receiver", settings=pb.LinkSettings(snr_db=3.0, **settings))]), timeout=10)
        assert err.value.code() == code and words in err.value.details(), err.value.details()
    assert emu.links()["receiver"].settings == before


def test_link_settings_start_as_the_core_defaults(emu: Emu) -> None:
    s = emu.links()["receiver"].settings
    core = LinkConfig()
    for name in LinkConfig.model_fields:
        if name not in ("snr_db", "seed", "snr_offset_db"):  # the emulator's own: set by its options and its seed
            value = getattr(s, name)
            assert (tuple(value) if name == "pilot_symbols" else value) == getattr(core, name), name


def test_an_ofdm_link_carries_what_the_core_carries_offline_with_the_feedback_drawn_ahead(emu: Emu) -> None:
    """Feedback for B frames, then a Send of B frames: the same channel, feedback and noise as the core's link
    (feedback, carry) from the link's seed."""
    configure(emu, seed=42, **OFDM)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    offline = Link(LinkConfig(snr_db=10.0, seed=42, **OFDM), 256)
    for batch in range(2):  # the second batch continues the channel and sees the first one's CSI (delay 1)
        x, fs = frames(8, seed=batch, start=8 * batch)
        fb = emu.tx.Feedback(pb.FeedbackRequest(frames=8), timeout=30)
        want_codes = offline.feedback(8).sigma_c2.symbol_codes()
        assert fb.phy == "ofdm" and torch.equal(torch.frombuffer(bytearray(fb.codes), dtype=torch.uint8).reshape(8, 128),
                                                want_codes)
        emu.tx.Send(pb.SendRequest(frames=fs), timeout=30)
        rx.wait(8 * (batch + 1))
        want = offline.carry(x)
        got = rx.got[8 * batch:]
        assert torch.equal(torch.stack([torch.from_numpy(to_numpy(rf.frame.symbols)) for rf in got]), want.latent)
        assert torch.equal(torch.tensor([list(rf.sigma2_re) for rf in got]), want.sigma_c2[:, 0::2])
    snr = emu.links()["receiver"].subcarrier_snr_db
    assert len(snr) == 16 * 12 and all(-60 < v < 60 for v in snr)


def test_an_eavesdropper_on_ofdm_gets_its_own_channel_at_its_own_snr(emu: Emu) -> None:
    configure(emu, **OFDM)
    rx = Reader(emu, LEGIT, "receiver")
    eve = Reader(emu, EVE, "eve", phy="ofdm", snr_offset_db=-5.0)
    attached(emu, "receiver")
    attached(emu, "eve")
    emu.tx.Send(pb.SendRequest(frames=frames(16)[1]), timeout=30)
    rx.wait(16)
    eve.wait(16)
    legit = torch.tensor([list(rf.sigma2_re) for rf in rx.got])
    theirs = torch.tensor([list(rf.sigma2_re) for rf in eve.got])
    assert {rf.snr_db for rf in eve.got} == {5.0} and {rf.snr_db for rf in rx.got} == {10.0}
    # an independent TDL-A draw: its fades are not the legitimate link's (16 frames of 0.5 ms see one realisation
    # each, so only their independence is checked, not their average level)
    corr = torch.corrcoef(torch.stack([legit.log().flatten(), theirs.log().flatten()]))[0, 1]
    assert abs(float(corr)) < 0.5, float(corr)


def test_switching_a_live_link_between_flat_and_ofdm_loses_no_frame_on_any_link(emu: Emu) -> None:
    rx = Reader(emu, LEGIT, "receiver")
    eve = Reader(emu, EVE, "eve")
    attached(emu, "receiver")
    attached(emu, "eve")
    sent = 0
    for step, phy in enumerate(["ofdm", "flat", "ofdm", "flat"]):
        emu.tx.Send(pb.SendRequest(frames=frames(20, start=sent)[1]), timeout=30)
        sent += 20
        configure(emu, "eve" if step % 2 else "receiver", phy=phy)
    emu.tx.Send(pb.SendRequest(frames=frames(20, start=sent)[1]), timeout=30)
    sent += 20
    rx.wait(sent)
    eve.wait(sent)
    for reader, name in ((rx, "receiver"), (eve, "eve")):
        assert [rf.frame.seq for rf in reader.got] == list(range(sent)), name
        state = emu.links()[name]
        assert (state.delivered, state.dropped_queue, state.lost) == (sent, 0, 0), name
    # frames of both kinds decode with the listeners' one view (per-RE noise where the link gave it)
    batch = received_batch(rx.got, 256)
    assert torch.isfinite(batch.z).all() and ((batch.abar_eff > 0) & (batch.abar_eff <= 1)).all()
    assert {bool(rf.sigma2_re) for rf in rx.got} == {True, False}


def test_feedback_is_the_transmitters_and_the_legitimate_links_only(emu: Emu) -> None:
    for stub in (emu.control, emu.stub("receiver"), emu.stub("eavesdropper", "eve")):
        with pytest.raises(grpc.RpcError) as err:
            stub.Feedback(pb.FeedbackRequest(frames=1), timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as err:
        emu.tx.Feedback(pb.FeedbackRequest(link="eve", frames=1), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "legitimate link" in err.value.details()
    flat = emu.tx.Feedback(pb.FeedbackRequest(frames=4), timeout=5)
    assert flat.phy == "flat" and flat.sigma_c2 == pytest.approx(0.1) and not flat.codes
    assert list(flat.frame_sigma_c2) == [pytest.approx(0.1)] * 4  # one level per frame (AWGN: N0 at 10 dB)
    wait_until(lambda: emu.links()["receiver"].frames_in == 0, 1, "no frame sent by asking for feedback")


def test_the_launchers_phy_options_start_the_emulator_with_an_ofdm_legitimate_link() -> None:
    """``python -m launcher --phy ofdm --channel-model CDL-C ...``: the emulator's argv carries them, and the emulator
    it starts checks them as any link setting and runs its legitimate link (and new eavesdropper links) on them."""
    from channel_emulator.__main__ import make_servicer
    from channel_emulator.settings import SPEC
    from launcher.__main__ import config_from, parse_args
    from services_common.auth import Verifier

    cfg = config_from(parse_args(["--phy", "ofdm", "--channel-model", "CDL-C", "--speed-kmh", "30",
                                  "--feedback-delay", "4"]))
    argv = SPEC.argv(**cfg.phy)
    assert argv == ["--phy", "ofdm", "--channel-model", "CDL-C", "--speed-kmh", "30.0", "--feedback-delay", "4"]
    emu = make_servicer(SPEC.parse(argv), Verifier(None)).emu
    try:
        s = emu.links["receiver"].settings
        assert (s.phy, s.channel_model, s.speed_kmh, s.feedback_delay) == ("ofdm", "CDL-C", 30.0, 4)
        assert emu.eve_defaults.phy == "ofdm"
        with pytest.raises(SystemExit):  # the choices are the core's: the command line refuses them itself
            SPEC.parse(["--phy", "ofdm", "--channel-model", "TDL-Q"])
        with pytest.raises(Exception, match=r"delay_spread_ns=0.0 ns is out of range \(0, 5000\] ns"):
            make_servicer(SPEC.parse(["--phy", "ofdm", "--delay-spread-ns", "0"]), Verifier(None))
    finally:
        emu.close()


def test_frames_drawn_ahead_are_carried_in_pieces_and_skipped_when_never_sent(emu: Emu) -> None:
    """A Send smaller or larger than the feedback asked for takes the drawn frames first, then draws; a second
    Feedback skips frames drawn for a request that never sent them."""
    configure(emu, seed=3, **OFDM)
    rx = Reader(emu, LEGIT, "receiver")
    attached(emu, "receiver")
    sizes = [(8, [5, 3]), (4, [6]), (6, []), (6, [6])]
    sent = 0
    for asked, sends in sizes:
        emu.tx.Feedback(pb.FeedbackRequest(frames=asked), timeout=30)
        for n in sends:
            emu.tx.Send(pb.SendRequest(frames=frames(n, start=sent)[1]), timeout=30)
            sent += n
    rx.wait(sent)
    assert [rf.frame.seq for rf in rx.got] == list(range(sent))
    assert all(len(rf.sigma2_re) == 128 for rf in rx.got)
    assert len(emu.links()["receiver"].subcarrier_snr_db) == 12 * min(32, sent)  # the frames carried
