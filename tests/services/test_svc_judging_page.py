"""The "Judge it yourself" page in a real browser (Debian's chromium through playwright, no downloads): a set of 20
items judged by keyboard alone; the answers stored in the panel's database are the keys pressed, and the figures the
page shows are the ones recomputed here from those stored answers. The keys are scripted by the test to check the
page and the arithmetic; they are not human answers.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from judging_pool import POOL, make_pool
from panel_fakes import PanelUnderTest, start_panel

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (scripts/setup)")


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelUnderTest]:
    folder = tmp_path_factory.mktemp("judge-page")
    make_pool(folder / "pools")
    p = start_panel(folder, "--judging-pools", str(folder / "pools"))
    yield p
    p.close()


def key_for(item: int) -> str:
    """The scripted key for the item at this position: x (can't tell) on every fifth, else a digit."""
    return "x" if item % 5 == 4 else str((3 * item) % 10)


def test_twenty_items_judged_by_keyboard_are_stored_and_scored(panel: PanelUnderTest) -> None:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(panel.url + "/judge")
        page.wait_for_selector(f"#pool option[value='{POOL}']", state="attached")
        page.fill("#new input[name=n]", "15")
        page.fill("#new input[name=checks]", "5")
        page.click("#start-btn")
        pressed: dict[int, str] = {}
        for shown in range(20):
            # items come in position order; the image's data-item is set once the browser has decoded it
            page.wait_for_function(f"document.querySelector('#item').dataset.item === '{shown}'")
            item = shown
            assert page.inner_text("#progress") == f"item {shown + 1} of 20"
            assert page.locator("#figures").inner_text() == ""  # no score while judging
            pressed[item] = key_for(item)
            page.keyboard.press(pressed[item])
        page.wait_for_selector("#human-acc")
        shown_figures = {"correct": int(page.get_attribute("#human-acc", "data-correct")),
                         "n": int(page.get_attribute("#human-acc", "data-n")),
                         "cant_tell": int(page.inner_text("#cant-tell")), "attention": page.inner_text("#attention"),
                         "best": page.inner_text("#best-judge"),
                         "right": page.inner_text("#judges tr[data-judge=right] td:nth-child(3)")}
        assert not errors, errors
        browser.close()
    with sqlite3.connect(f"file:{panel.db}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT pos, kind, truth, answer, judges FROM judging_items ORDER BY pos").fetchall()
    assert [a for _, _, _, a, _ in rows] == [-1 if pressed[i] == "x" else int(pressed[i]) for i in range(20)]
    recs = [r for r in rows if r[1] == "reconstruction"]
    checks = [r for r in rows if r[1] == "check"]
    assert len(recs) == 15 and len(checks) == 5
    correct = sum(truth == answer for _, _, truth, answer, _ in recs)
    agree_right = sum(truth == answer for _, _, truth, answer, _ in recs) / 15  # the "right" judge says the truth
    assert shown_figures["correct"] == correct and shown_figures["n"] == 15
    assert shown_figures["cant_tell"] == sum(answer == -1 for _, _, _, answer, _ in recs)
    assert shown_figures["attention"] == f"{sum(t == a for _, _, t, a, _ in checks)} of 5"
    assert shown_figures["right"] == f"{100 * agree_right:.1f}%"
