"""The dashboard in a real browser: Debian's chromium, headless, driven by playwright (pip), no downloads.

Loads the page from a launched stack (token configured), enters the token, starts a run and sees the
accuracies and the progress bar move, changes a link's SNR, switches the legitimate link to ofdm, runs a live
privacy sweep and sees accuracy plotted against t* and the ofdm link's SNR per subcarrier as a heat strip,
uploads an image and sees the receiver's and the eavesdropper's results; then checks that the API docs at /docs
render every operation from the panel's own files. Screenshots go to out/test-artifacts/ (gitignored).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import ROOT, LiveStack, child_env, png_bytes, start_stack, stop_stack

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (scripts/setup)")
ARTIFACTS = ROOT / "out" / "test-artifacts"
TOKEN = "dash-test-token"


@pytest.fixture(scope="module")
def stack(checkpoints: Path, tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("dash")
    sweep = d / "results.json"
    rows = [{"snr_db": s, "t_star": t, "acc": {"selfref": a}, "eve": {"feature": e}}
            for t in (None, 300) for s, a, e in ((0, .8, .7), (5, .9, .6), (10, .97, .5))]
    sweep.write_text(json.dumps({"dataset": "mnist", "model_id": "fake", "n": 100, "rows": rows}))
    env = child_env() | {"DIFFSEM_PANEL_TOKEN": TOKEN, "DIFFSEM_SWEEP_FILE": str(sweep)}
    live = start_stack(checkpoints, d, "-e", "eve:feature-classifier:-5", "--receiver-threads", "1", env=env)
    yield live
    stop_stack(live)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        yield b
        b.close()


def test_dashboard_run_controls_and_upload(stack: LiveStack, browser, tmp_path: Path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1300})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    external: list[str] = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith((stack.url, "blob:" + stack.url)) else None)
    page.goto(stack.url + "/")
    page.wait_for_function("typeof uPlot === 'function'")  # the charting library loads from the panel itself
    page.wait_for_selector("#links tbody tr[data-name=receiver]", timeout=30_000)
    page.wait_for_selector("#chart-snr .uplot", timeout=10_000)  # the sweep chart

    # Without the token a run is refused and the page says so.
    page.click("#run-btn")
    page.wait_for_selector("#runout .err", timeout=10_000)
    assert "401" in page.inner_text("#runout")

    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.fill("#run input[name=n]", "300")
    page.fill("#run input[name=batch_size]", "50")
    page.click("#run-btn")
    page.wait_for_function("document.querySelector('#progress').value > 0", timeout=120_000)
    page.wait_for_function("document.querySelector('#legit-acc').textContent.includes('%')", timeout=60_000)
    first = page.inner_text("#msgs")
    page.wait_for_function("document.querySelector('#runout').dataset.status === 'done'", timeout=300_000)
    assert float(page.get_attribute("#progress", "value")) == pytest.approx(1.0)
    assert int(page.inner_text("#msgs")) > int(first) or int(first) == 300
    page.wait_for_function("document.querySelector('#msgs').textContent === '300'", timeout=10_000)
    legit = float(page.inner_text("#legit-acc").rstrip("%"))
    assert legit > 80
    eve_row = page.inner_text("#listeners tbody tr[data-name=eve]")
    assert "feature-classifier" in eve_row and "pts" in eve_row  # accuracy and secrecy gap
    assert page.locator("#chart-time .uplot").count() == 1

    # Channel control: set the eavesdropper link's SNR; the links table shows it.
    page.select_option("#link-select", "eve")
    page.fill("#chan input[name=snr]", "-3")
    page.click("#chan button")
    page.wait_for_selector("#chanout:not(:empty)")
    assert "applied" in page.inner_text("#chanout"), page.inner_text("#chanout")
    page.wait_for_function(
        "document.querySelector('#links tbody tr[data-name=eve]').cells[2].textContent === '-3'", timeout=10_000)
    # Antennas from the form (PUT /api/links antennas.n_rx): stored on eve's link, used once the transmitter has several
    page.fill("#chan input[name=n_rx]", "2")
    page.click("#chan button")
    page.wait_for_function("document.querySelector('#links tbody tr[data-name=eve]').cells[4].textContent === "
                           "'1×2 (used with n_tx > 1)'", timeout=10_000)
    assert page.eval_on_selector("#links tbody tr[data-name=receiver]", "r => r.cells[4].textContent") == "1×1"
    page.fill("#chan input[name=n_rx]", "")
    # The antennas' channel (the legitimate link's antennas.channel_model, every link's once n_tx > 1)
    page.select_option("#link-select", "receiver")
    page.fill("#chan input[name=snr]", "")
    page.select_option("#chan select[name=antenna_channel]", "CDL-C")
    page.click("#chan button")
    page.wait_for_function("fetch('/api/links').then(r => r.json()).then(j => "
                           "j.links.receiver.antennas.channel_model === 'CDL-C')", timeout=10_000)
    page.select_option("#chan select[name=antenna_channel]", "")

    # Link view: the legitimate link switched to ofdm from the form; once frames flow (the sweep below) its SNR per
    # subcarrier of recent frames shows as a heat strip, one row per frame and one column per subcarrier.
    page.select_option("#link-select", "receiver")
    page.fill("#chan input[name=snr]", "")
    page.select_option("#chan select[name=phy]", "ofdm")
    page.click("#chan button")
    page.wait_for_function(
        "document.querySelector('#links tbody tr[data-name=receiver]').cells[3].textContent === 'ofdm TDL-A'",
        timeout=10_000)

    # Live privacy sweep: one button steps t* while test images flow; the chart plots each listener against t*.
    page.fill("#sweep input[name=t_stars]", "0,600")
    page.fill("#sweep input[name=n]", "100")
    page.click("#sweep-btn")
    page.wait_for_function("document.querySelector('#sweepout').dataset.status === 'done'", timeout=300_000)
    assert "2/2 levels" in page.inner_text("#sweepout")
    assert page.locator("#chart-tstar .uplot").count() == 1
    page.wait_for_selector("#snr-strips canvas[data-name=receiver]", timeout=10_000)
    assert page.eval_on_selector("#snr-strips canvas[data-name=receiver]", "c => [c.width, c.height]") == [240, 160]
    legend = page.inner_text("#chart-tstar")
    assert "receiver" in legend and "eve" in legend
    page.reload()  # the newest sweep is shown on load too, whoever started it
    page.wait_for_selector("#chart-tstar .uplot", timeout=10_000)
    assert "2/2 levels" in page.inner_text("#sweepout")
    page.fill("#token", TOKEN)

    # Upload an image: original, receiver label and the eavesdropper's result appear.
    from diffsem.data import load_split

    images, labels = load_split("mnist", "test")
    img = images[7].squeeze().numpy()
    path = tmp_path / f"digit{int(labels[7])}.png"
    path.write_bytes(png_bytes((np.asarray(img) * 255).astype(np.uint8)))
    page.set_input_files("#send input[type=file]", str(path))
    page.fill("#send input[name=label]", str(int(labels[7])))
    page.click("#send button")
    page.wait_for_selector("#rx-result", timeout=60_000)
    assert page.inner_text("#rx-result .big").strip() in [str(i) for i in range(10)]
    assert page.locator("#sent img[alt=original]").count() == 1
    assert page.locator(".eve-result[data-name=eve]").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    # Seeded noise is flagged as known to anyone who knows the seed (issue 19); the default stack's is from the OS.
    assert page.is_hidden("#seeded")
    with stack.http() as c:
        r = c.put("/api/links", json={"tx_seed": 0}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
    page.wait_for_selector("#seeded:not([hidden])", timeout=10_000)
    assert "known to anyone who knows the seed" in page.inner_text("#seeded")
    assert "transmitter" in page.inner_text("#seeded")
    assert not errors, errors
    assert not external, f"the page fetched from elsewhere: {external}"
    page.close()


def test_api_docs_render_offline(stack: LiveStack, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1300})
    external: list[str] = []
    page.on("request", lambda req: external.append(req.url) if not req.url.startswith(stack.url) else None)
    page.goto(stack.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = {p.strip() for p in page.locator(".opblock-summary-path").all_inner_texts()}
    assert {"/api/transmit", "/api/runs", "/api/sweeps", "/api/links", "/api/summary"} <= paths, paths
    page.screenshot(path=str(ARTIFACTS / "docs.png"))
    assert not external, f"/docs fetched from elsewhere: {external}"
    page.close()
