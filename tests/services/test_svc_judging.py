"""Human judging on a real panel process (docs/design.md §4, "Human judging"): blind sets from a pool, answers stored
in the panel's database, figures that match the stored answers, exports, and bad input.

The answers here are scripted by the test, only to check the bookkeeping and the arithmetic; they are not human
answers and no figure from them is reported anywhere.
"""

from __future__ import annotations

import io
import math
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from judging_pool import POOL, make_pool
from panel_fakes import PanelUnderTest, start_panel
from PIL import Image


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelUnderTest]:
    folder = tmp_path_factory.mktemp("judging")
    make_pool(folder / "pools")
    (folder / "pools" / "not-a-pool.json").write_text("{}")  # a card without its images is not listed
    p = start_panel(folder, "--judging-pools", str(folder / "pools"))
    yield p
    p.close()


def new_set(c: httpx.Client, n: int = 12, checks: int = 3) -> dict:
    r = c.post("/api/judging/sets", json={"pool": POOL, "n": n, "checks": checks})
    assert r.status_code == 201, r.text
    return r.json()


def scripted(item: int) -> int | str:
    """The test's fixed answer pattern (not a person's): a class from the position, "can't tell" on every third.

    Every third position gives 5 "can't tell" answers in a 15-item set; with 3 attention checks at random positions
    at least 2 of them fall on reconstructions, so the "can't tell" figures always have something to count (every
    fourth position gave 3, all checks in 1 run of 455, and the expected figure divided by zero)."""
    return "cant_tell" if item % 3 == 2 else item % 10


def judge_all(c: httpx.Client, set_id: str) -> dict[int, int | str]:
    given = {}
    nxt = c.get(f"/api/judging/sets/{set_id}/next").json()
    while not nxt["done"]:
        given[nxt["item"]] = scripted(nxt["item"])
        r = c.post(f"/api/judging/sets/{set_id}/answers", json={"item": nxt["item"], "answer": given[nxt["item"]]})
        assert r.status_code == 200, r.text
        nxt = r.json()
    return given


def stored(panel: PanelUnderTest, set_id: str) -> dict[int, int | None]:
    with sqlite3.connect(f"file:{panel.db}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT pos, answer FROM judging_items WHERE set_id=?", (set_id,)).fetchall())


def expected_figures(items: list[dict]) -> dict:
    """The figures recomputed here from the stored answers and keys, independently of diffsem.calibration."""
    recs = [i for i in items if i["kind"] == "reconstruction"]
    checks = [i for i in items if i["kind"] == "check"]
    out = {"n": len(recs), "correct": sum(i["answer"] == i["truth"] for i in recs),
           "cant_tell": sum(i["answer"] == -1 for i in recs),
           "attention": sum(i["answer"] == i["truth"] for i in checks), "checks": len(checks), "judges": {}}
    for j in ("right", "wrong", "unsure"):
        unsure = [i for i in recs if i["answer"] == -1]
        out["judges"][j] = {"agreement": sum(i["judges"][j] == i["answer"] for i in recs) / len(recs),
                            "cant_tell_correct": sum(i["judges"][j] == i["truth"] for i in unsure) / len(unsure)}
    return out


def test_pools_are_listed_without_their_figures(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        pools = c.get("/api/judging/pools").json()
    assert [p["name"] for p in pools] == [POOL]
    assert pools[0]["threat_model"] == "white-box" and pools[0]["n"] == 60 and pools[0]["checks"] == 10
    assert "figures" not in pools[0] and "judges" not in pools[0]


def test_a_set_is_blind_until_finished_and_its_figures_match_the_stored_answers(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        s = new_set(c)
        assert (s["status"], s["items"], s["answered"]) == ("open", 15, 0) and "figures" not in s
        first = c.get(f"/api/judging/sets/{s['id']}/next").json()
        assert set(first) == {"id", "done", "item", "image", "answered", "items", "classes"}  # no label, no kind
        assert first["item"] == 0 and first["image"].startswith("data:image/png;base64,")
        assert c.get(f"/api/judging/sets/{s['id']}/answers").status_code == 409  # the key stays hidden
        given = judge_all(c, s["id"])
        done = c.get(f"/api/judging/sets/{s['id']}").json()
        key = c.get(f"/api/judging/sets/{s['id']}/answers").json()
    assert done["status"] == "finished" and len(given) == 15
    assert stored(panel, s["id"]) == {i: (-1 if a == "cant_tell" else a) for i, a in given.items()}
    assert [i["answer"] for i in key["items"]] == [-1 if given[i] == "cant_tell" else given[i] for i in range(15)]
    assert sum(i["kind"] == "check" for i in key["items"]) == 3
    want, f = expected_figures(key["items"]), done["figures"]
    assert (f["human"]["n"], f["human"]["correct"], f["human"]["cant_tell"]) == (want["n"], want["correct"],
                                                                                 want["cant_tell"])
    assert f["human"]["accuracy"] == pytest.approx(want["correct"] / want["n"])
    low, high = f["human"]["ci95"]
    assert 0 <= low <= f["human"]["accuracy"] <= high <= 1
    assert (f["attention"]["correct"], f["attention"]["n"]) == (want["attention"], want["checks"])
    for j, w in want["judges"].items():
        assert f["judges"][j]["agreement"] == pytest.approx(w["agreement"]), j
        assert f["judges"][j]["on_cant_tell"]["correct"] == pytest.approx(w["cant_tell_correct"]), j
    assert f["judges"]["right"]["accuracy"] == 1.0 and f["judges"]["wrong"]["accuracy"] == 0.0
    assert f["best_judge"]["answers"] == 12
    best = max(want["judges"], key=lambda j: (want["judges"][j]["agreement"], -ord(j[0])))
    assert math.isclose(f["best_judge"]["agreement"], want["judges"][best]["agreement"])


def test_bad_answers_get_a_clear_4xx_and_stored_answers_never_change(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        s = new_set(c, n=4, checks=0)
        url = f"/api/judging/sets/{s['id']}/answers"
        r = c.post(url, json={"item": 99, "answer": 3})
        assert r.status_code == 404 and "no item 99" in r.json()["detail"]
        assert c.post(f"/api/judging/sets/{'0' * 32}/answers", json={"item": 0, "answer": 3}).status_code == 404
        for bad in (10, -2, "seven", 2.5):
            r = c.post(url, json={"item": 0, "answer": bad})
            assert r.status_code == 422, (bad, r.text)
        assert c.post(url, json={"item": 0, "answer": 7}).status_code == 200
        r = c.post(url, json={"item": 0, "answer": 1})
        assert r.status_code == 409 and "already answered" in r.json()["detail"]
        assert stored(panel, s["id"])[0] == 7
        r = c.get(f"/api/judging/sets/{s['id']}/sheet.png")
        assert r.status_code == 409 and "being judged" in r.json()["detail"]
        assert c.get(f"/api/judging/sets/{s['id']}/form.csv").status_code == 409
        for item in (1, 2, 3):
            assert c.post(url, json={"item": item, "answer": "cant_tell"}).status_code == 200
        r = c.post(url, json={"item": 2, "answer": 5})
        assert r.status_code == 409 and "finished" in r.json()["detail"]
    assert stored(panel, s["id"]) == {0: 7, 1: -1, 2: -1, 3: -1}


def test_sets_refuse_pools_that_are_not_there_or_too_small(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        for name in ("nope", "../pools/" + POOL, "not-a-pool", "/etc/passwd"):
            r = c.post("/api/judging/sets", json={"pool": name, "n": 2})
            assert r.status_code == 404 and POOL in r.json()["detail"], (name, r.text)
        r = c.post("/api/judging/sets", json={"pool": POOL, "n": 61})
        assert r.status_code == 422 and "has 60 reconstructions" in r.json()["detail"]
        assert c.post("/api/judging/sets", json={"pool": POOL, "n": 0}).status_code == 422


def test_an_open_set_exports_a_sheet_and_a_form_that_comes_back_all_or_nothing(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        s = new_set(c, n=12, checks=0)
        sheet = c.get(f"/api/judging/sets/{s['id']}/sheet.png")
        assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(sheet.content)).size == (10 * 90, 2 * 104)  # 10 a row, 2 rows
        form = c.get(f"/api/judging/sets/{s['id']}/form.csv").text
        lines = form.splitlines()
        assert lines[0].startswith("#") and lines[1] == "item,answer" and lines[2:] == [f"{i}," for i in range(12)]
        assert c.get(f"/api/judging/sets/{s['id']}").json()["exported"] is not None
        bad = "item,answer\n0,3\n1,banana\n"
        r = c.post(f"/api/judging/sets/{s['id']}/form", files={"file": ("form.csv", bad)})
        assert r.status_code == 422 and stored(panel, s["id"])[0] is None  # nothing stored from a bad form
        filled = "\n".join(lines[:2] + [f"{i},{'?' if i == 5 else i % 10}" for i in range(12)])
        r = c.post(f"/api/judging/sets/{s['id']}/form", files={"file": ("form.csv", filled)})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "finished" and r.json()["figures"]["human"]["cant_tell"] == 1
        again = c.post(f"/api/judging/sets/{s['id']}/form", files={"file": ("form.csv", filled)})
        assert again.status_code == 409
    with sqlite3.connect(f"file:{panel.db}?mode=ro", uri=True) as db:
        assert {r[0] for r in db.execute("SELECT source FROM judging_items WHERE set_id=?", (s["id"],))} == {"form"}


def test_the_report_pools_every_finished_set(panel: PanelUnderTest) -> None:
    with panel.http() as c:
        before = c.get("/api/judging/report").json()
        s = new_set(c, n=5, checks=1)
        judge_all(c, s["id"])
        after = c.get("/api/judging/report").json()
    assert after["sets"] == before["sets"] + 1
    assert after["all"]["human"]["n"] == before["all"]["human"]["n"] + 5
    assert after["pools"][POOL]["answers"] == after["all"]["answers"]
