"""Panel security: bearer token on mutating endpoints, loopback-only binding without a token."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from control_panel.app import PanelSettings, create_app

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def client():
    # Unreachable upstreams: an authorised request gets past the token check and then fails upstream (503/...).
    settings = PanelSettings(transmitter="127.0.0.1:9", emulator="127.0.0.1:9", telemetry_port=0, token=TOKEN,
                             transmit_timeout_s=1.0)
    with TestClient(create_app(settings)) as c:
        yield c


def npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((28, 28), np.float32))
    return buf.getvalue()


DOWN = "channel emulator: failed to connect"  # what the unreachable upstream answers once past the token
MUTATING = [  # (method, path, request, status and detail with the right token)
    ("put", "/api/links", {"json": {"links": {"receiver": {"snr_db": 5}}}}, 503, DOWN),
    ("put", "/api/channel", {"json": {"links": {"receiver": {"snr_db": 5}}}}, 503, DOWN),  # the deprecated name
    ("post", "/api/runs", {"json": {"dataset": "mnist", "n": 2}}, 503, DOWN),
    ("delete", "/api/runs/nope", {}, 404, "no run 'nope'"),
    ("post", "/api/transmit", {"files": {"file": ("x.npy", npy())}}, 503, DOWN),
]


@pytest.mark.parametrize(("method", "path", "kw", "status", "detail"), MUTATING,
                         ids=[f"{m} {p}" for m, p, *_ in MUTATING])
def test_mutating_endpoints_need_the_token(client, method, path, kw, status, detail):
    r = getattr(client, method)(path, **kw)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    assert "bearer token" in r.json()["detail"]
    r = client.request(method.upper(), path, headers={"Authorization": "Bearer wrong"}, **kw)
    assert r.status_code == 401
    r = client.request(method.upper(), path, headers={"Authorization": "Basic " + TOKEN}, **kw)
    assert r.status_code == 401
    r = client.request(method.upper(), path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
    assert r.status_code == status and r.json()["detail"].startswith(detail), r.text  # past the token, to the work


def test_reads_need_no_token(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert "<title>" in client.get("/").text
    assert client.get("/api/runs").json() == []
    assert "diffsem_messages" in client.get("/metrics").text
    assert client.get("/api/links/schema").json()[0]["name"] == "snr_db"
    assert "HTTPBearer" in client.get("/openapi.json").text  # documented in the OpenAPI schema


def test_no_token_configured_means_no_check():
    with TestClient(create_app(PanelSettings(transmitter="127.0.0.1:9", emulator="127.0.0.1:9",
                                             telemetry_port=0))) as c:
        assert c.delete("/api/runs/nope").status_code == 404


def run_panel(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DIFFSEM_PANEL_TOKEN"}
    if token:
        env["DIFFSEM_PANEL_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "control_panel", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_refuses_non_loopback_bind_without_token():
    out = run_panel("--host", "0.0.0.0", "--http-port", "0", "--telemetry-port", "0")
    assert out.returncode == 2
    assert "DIFFSEM_PANEL_TOKEN" in out.stderr
