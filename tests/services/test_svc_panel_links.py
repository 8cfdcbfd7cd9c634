"""``PUT /api/links``: the core declares the settings, errors map to HTTP in one place, and a change is atomic; the
old name ``/api/channel`` still answers, marked deprecated.

Against the live stack (the real emulator and transmitter) and against stand-ins that implement the Configure
contract (``validate_only``, NOT_FOUND for an unknown link) so that atomicity is observable call by call.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from panel_fakes import PanelUnderTest, start_panel
from svc_helpers import LiveStack

from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb

SNR, T_STAR = 10.0, 300


@pytest.mark.parametrize("body,status,words", [
    ('{"links": {"receiver": {"snr_db": NaN}}}', 422, "finite"),
    ('{"links": {"receiver": {"snr_db": Infinity}}}', 422, "finite"),
    ('{"links": {"eve": {"snr_db": -Infinity}}}', 422, "finite"),
    ('{"links": {"receiver": {"snr_db": "nan"}}}', 422, "finite"),
    ('{"t_star": 1000}', 422, "out of range"),
    ('{"t_star": -1}', 422, "out of range"),
    ('{"links": {"receiver": {"fading": "awgn"}}}', 422, "fading"),
    ('{"links": {"receiver": {"loss_prob": 1.5}}}', 422, "loss_prob=1.5 is out of range [0, 1]"),
    ('{"links": {"receiver": {"snr_db": 150}}}', 422, "snr_db=150.0 dB is out of range [-100, 100] dB"),
    ('{"links": {"receiver": {"snr_offset_db": 3}}}', 422, "legitimate link"),
    ('{"links": {"receiver": {"snrdb": 3}}}', 422, 'no field named "snrdb"'),
    ('{"links": {"eve": {"trace": {"file": "/etc/passwd"}}}}', 422, 'no field named "file"'),
    ('{"links": {"receiver": {"coherence_frames": 1.5}}}', 422, "coherence_frames"),
])
def test_bad_link_settings_are_refused_and_change_nothing(live: LiveStack, body: str, status: int,
                                                             words: str) -> None:
    with live.http() as c:
        before = c.get("/api/links").json()
        r = c.put("/api/links", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status, r.text
        assert words in r.json()["detail"], r.json()
        assert "root:" not in r.text
        after = c.get("/api/links").json()
    assert after["t_star"] == before["t_star"] == T_STAR
    assert after["links"]["receiver"]["snr_db"] == before["links"]["receiver"]["snr_db"]


def test_a_refused_change_applies_nothing_on_the_live_stack(live: LiveStack) -> None:
    with live.http() as c:
        before = c.get("/api/links").json()
        r = c.put("/api/links", json={"links": {"receiver": {"snr_db": 2.0}, "nobody": {"snr_db": 3.0}},
                                        "t_star": 200})
        assert r.status_code == 404 and "nobody" in r.json()["detail"], r.text
        r = c.put("/api/links", json={"links": {"receiver": {"snr_db": 3.0}}, "t_star": 5000})
        assert r.status_code == 422 and "out of range" in r.json()["detail"], r.text
        after = c.get("/api/links").json()
    assert "nobody" not in after["links"] and after["t_star"] == before["t_star"]
    assert after["links"]["receiver"]["snr_db"] == before["links"]["receiver"]["snr_db"]


def test_link_changes_apply_live(live: LiveStack) -> None:
    with live.http() as c:
        r = c.put("/api/links", json={"links": {"receiver": {"snr_db": 3.0}}, "t_star": 200})
        assert r.status_code == 200, r.text
        assert r.json()["t_star"] == 200 and r.json()["links"]["receiver"]["snr_db"] == 3.0
        assert r.json()["links"]["eve"]["snr_db"] == 3.0  # the eavesdropper follows with its offset 0
        r = c.put("/api/links", json={"links": {"receiver": {"snr_db": SNR}}, "t_star": T_STAR})
        assert r.json()["t_star"] == T_STAR and r.json()["links"]["receiver"]["snr_db"] == SNR


def test_the_old_route_answers_as_the_new_one_and_is_marked_deprecated(live: LiveStack) -> None:
    with live.http() as c:
        r = c.put("/api/channel", json={"links": {"receiver": {"snr_db": 4.0}}})
        assert r.status_code == 200 and r.json()["links"]["receiver"]["snr_db"] == 4.0, r.text
        assert c.get("/api/channel").json()["links"]["receiver"] == c.get("/api/links").json()["links"]["receiver"]
        assert c.put("/api/links", json={"links": {"receiver": {"snr_db": SNR}}}).status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
    assert paths["/api/channel"]["put"]["deprecated"] and paths["/api/channel"]["get"]["deprecated"]
    assert "deprecated" not in paths["/api/links"]["put"]


def test_the_link_schema_is_the_cores(live: LiveStack) -> None:
    """Every setting with its default, unit and bound, read from LinkConfig: the dashboard's form and any client
    take them from here, so a bound is written once."""
    from diffsem.config import LinkConfig

    with live.http() as c:
        schema = {f["name"]: f for f in c.get("/api/links/schema").json()}
    assert set(schema) == set(LinkConfig.model_fields)
    assert schema["snr_db"] | {} == {"name": "snr_db", "meaning": "SNR, Es/N0 per complex symbol (dB)", "default": 10.0,
                                     "unit": "dB", "scope": "all", "min": -100, "max": 100, "open_min": False}
    assert schema["fading"]["choices"] == ["none", "rayleigh", "rician"] and schema["fading"]["scope"] == "flat"
    assert schema["delay_spread_ns"]["open_min"] and schema["queue_size"]["scope"] == "live"


# ---- atomicity, observed on stand-ins that record what they applied ---------------------------------------
@pytest.fixture
def panel(tmp_path: Path) -> Iterator[PanelUnderTest]:
    p = start_panel(tmp_path)
    yield p
    p.close()


def test_a_refused_link_or_t_star_applies_nothing_anywhere(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        r = c.put("/api/links", json={"links": {"eve": {"snr_db": 1.0}, "nobody": {"snr_db": 1.0}}, "t_star": 100})
        assert r.status_code == 404 and "no link named 'nobody'" in r.json()["detail"], r.text
        r = c.put("/api/links", json={"links": {"eve": {"snr_db": 1.0}}, "t_star": 4000})
        assert r.status_code == 422 and r.json()["grpc_status"] == "OUT_OF_RANGE", r.text
    assert panel.emulator.applied == [] and panel.transmitter.applied == []
    with panel.http() as c:
        r = c.put("/api/links", json={"links": {"eve": {"snr_db": 1.0, "fading": "rayleigh",
                                                          "trace": {"points": [{"t_s": 0, "snr_db": 4}],
                                                                    "interp": "INTERP_LINEAR"}}}, "t_star": 100})
        assert r.status_code == 200, r.text
    (applied,) = panel.emulator.applied
    settings = applied.links[0].settings
    assert (settings.snr_db, settings.fading, settings.trace.points[0].snr_db) == (1.0, "rayleigh", 4.0)
    assert settings.trace.interp == ch_pb.INTERP_LINEAR and not applied.validate_only
    assert [cfg.t_star for cfg in panel.transmitter.applied] == [100]


def test_upstream_failures_map_to_http_statuses(panel: PanelUnderTest) -> None:
    for s in panel.servers:
        s.stop(0)
    with panel.http() as c:
        r = c.put("/api/links", json={"links": {"eve": {"snr_db": 1.0}}})
        assert r.status_code == 503 and r.json()["detail"].startswith("channel emulator:"), r.text
        assert c.get("/api/links").status_code == 503
        summary = c.get("/api/summary")
        assert summary.status_code == 200 and "links_error" in summary.json()
