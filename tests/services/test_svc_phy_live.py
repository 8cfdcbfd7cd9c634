"""The PHY on the live stack: ``PUT /api/links`` takes the PHY settings per link with clear 422s, a run
over an ``ofdm`` legitimate link decodes with per-RE CSI feedback, and the transmitter refuses malformed feedback.

Every test leaves the shared stack as it found it (a flat legitimate link, no pinned CSI).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import torch
from svc_helpers import LiveStack

from diffsem.phy import dequantise_csi, quantise_csi
from protos.diffsem.v1 import (
    common_pb2,
    frame_pb2,
    receiver_pb2,
    receiver_pb2_grpc,
    transmitter_pb2,
    transmitter_pb2_grpc,
)
from services_common.tensors import to_proto

OFDM = {"phy": "ofdm", "channel_model": "TDL-A", "delay_spread_ns": 100, "speed_kmh": 3}


@pytest.mark.parametrize("body,words", [
    ({"phy": "ofdm", "channel_model": "TDL-Z"}, "channel_model='TDL-Z' is not one of TDL-A"),
    ({"phy": "ofdm", "delay_spread_ns": 0}, "delay_spread_ns=0.0 ns is out of range"),
    ({"phy": "ofdm", "delay_spread_ns": 50000}, "delay_spread_ns=50000.0 ns is out of range (0, 5000] ns"),
    ({"phy": "ofdm", "speed_kmh": -3}, "speed_kmh=-3.0 km/h is out of range [0, 500] km/h"),
    ({"phy": "ofdm", "fft_size": 8}, "has 96 data REs; a frame of k=256 real values needs 128"),
    ({"phy": "ofdm", "pilot_symbols": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}, "leave no OFDM symbol"),
])
def test_bad_phy_settings_get_a_422_and_change_nothing(live: LiveStack, body: dict[str, object], words: str) -> None:
    with live.http() as c:
        before = c.get("/api/links").json()["links"]["receiver"]
        r = c.put("/api/links", json={"links": {"receiver": {"snr_db": 3, **body}}, "t_star": 200})
        assert r.status_code == 422 and words in r.json()["detail"], r.text
        after = c.get("/api/links").json()
    assert after["t_star"] != 200 and after["links"]["receiver"]["phy"] == "flat"
    assert after["links"]["receiver"]["snr_db"] == before["snr_db"]


@pytest.fixture()
def ofdm_receiver(live: LiveStack) -> Iterator[None]:
    with live.http() as c:
        r = c.put("/api/links", json={"links": {"receiver": OFDM, "eve": OFDM}})
        assert r.status_code == 200 and r.json()["links"]["receiver"]["phy"] == "ofdm", r.text
        try:
            yield
        finally:
            flat = {"phy": "flat"}
            assert c.put("/api/links", json={"links": {"receiver": flat, "eve": flat}}).status_code == 200


def test_a_run_over_an_ofdm_legitimate_link_shapes_self_noise_per_re(live: LiveStack, ofdm_receiver: None) -> None:
    with live.http() as c:
        run = live.wait_run(c.post("/api/runs", json={"n": 96, "batch_size": 32}).json()["id"])
        channel = c.get("/api/links").json()
    assert run["status"] == "done" and run["decided"] == 96
    assert run["listeners"]["receiver"]["reports"] == run["listeners"]["eve"]["reports"] == 96
    assert run["accuracy"]["receiver"] > 0.85, run["accuracy"]
    link = channel["links"]["receiver"]
    strip = link["subcarrier_snr_db"]
    assert len(strip) == 32 and {len(row) for row in strip} == {link["fft_size"]}  # recent frames x subcarriers
    with live.grpc("transmitter") as ch:
        state = transmitter_pb2_grpc.TransmitterStub(ch).GetState(common_pb2.InfoRequest(), timeout=5)
    assert state.csi_values == 128 and not state.csi_pinned  # one level per RE, from the emulator


@pytest.mark.parametrize("values,words", [
    ([0.1] * 127, "127 values; give k/2 = 128"),
    ([0.1] * 127 + [math.nan], "finite"),
    ([math.inf], "finite"),
    ([-0.1], ">= 0"),
])
def test_malformed_feedback_is_invalid_argument_and_the_previous_csi_stays(live: LiveStack, values: list[float],
                                                                          words: str) -> None:
    with live.grpc("transmitter") as ch:
        tx = transmitter_pb2_grpc.TransmitterStub(ch)
        pinned = tx.Feedback(transmitter_pb2.CsiFeedback(sigma2=[0.05] * 128), timeout=5)
        try:
            assert pinned.csi_pinned
            with pytest.raises(grpc.RpcError) as err:
                tx.Feedback(transmitter_pb2.CsiFeedback(sigma2=values), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
            with live.http() as c:  # the frames still go out with the pinned per-RE CSI
                r = c.post("/api/transmit", files={"file": ("x.npy", _npy(), "application/octet-stream")})
            assert r.status_code == 200, r.text
            level = float(dequantise_csi(quantise_csi(torch.tensor(0.05))))  # the pinned level, 0.5 dB steps
            header = r.json()["header"]
            assert header["sigma_c2_feedback"] == pytest.approx(level, rel=1e-6)
            assert header["sigma_self2"] == pytest.approx(max(0.0, 1 - header["a"] - level), rel=1e-5)
            state = tx.GetState(common_pb2.InfoRequest(), timeout=5)
            assert state.csi_pinned and state.csi_values == 128
            assert state.sigma_c2_feedback == pytest.approx(0.05, rel=0.07)  # quantised to 0.5 dB
        finally:
            assert not tx.Feedback(transmitter_pb2.CsiFeedback(clear=True), timeout=5).csi_pinned


def test_a_receiver_refuses_per_re_csi_or_noise_of_the_wrong_length(live: LiveStack) -> None:
    """Frames given to Decode directly: header CSI codes and per-RE noise need one value per complex symbol; the
    right lengths decode (and a frame carrying both decodes the same as the ofdm listeners see it)."""
    def frame(csi: bytes = b"", sigma2_re: list[float] | None = None) -> frame_pb2.ReceivedFrame:
        header = frame_pb2.PublicHeader(t_star=300, a=0.5, sigma_self2=0.3, csi=csi)
        return frame_pb2.ReceivedFrame(frame=frame_pb2.Frame(message_id="m", symbols=to_proto(torch.zeros(256)),
                                                             header=header), sigma2=0.1, sigma2_re=sigma2_re or [])
    cases = [(frame(csi=bytes(5)), "header csi needs k/2 = 128 codes, got 5"),
             (frame(sigma2_re=[0.1] * 64), "sigma2_re needs k/2 = 128 finite variances"),
             (frame(sigma2_re=[math.nan] * 128), "sigma2_re needs k/2 = 128 finite variances")]
    with live.grpc("receiver") as ch:
        stub = receiver_pb2_grpc.ReceiverStub(ch)
        for rf, words in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.Decode(receiver_pb2.DecodeRequest(frames=[rf], mode="direct"), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
        ok = frame(csi=bytes([60]) * 128, sigma2_re=[0.1] * 128)
        decided = stub.Decode(receiver_pb2.DecodeRequest(frames=[ok], mode="direct"), timeout=5).decisions[0]
    assert decided.label in range(10) and 0 < decided.abar_eff < 1


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((28, 28), dtype=np.float32))
    return buf.getvalue()
