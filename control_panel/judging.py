"""Human judging ("Judge it yourself", docs/design.md §4): blind sets drawn from judging pools, answers stored in
the panel's database, and the figures that calibrate the judges against people.

A **set** is drawn from one pool (:mod:`diffsem.pools`: an attack's reconstructions at one condition): ``n`` of its
reconstructions and ``checks`` clean attention-check images, chosen and ordered with the operating system's
randomness (``secrets``), so nothing the page or a reader of this code can predict decides what is shown. Each
item is stored with its image and its key (the true class, which pool item it is, every judge's label of it); the
page sees only the image and the item's position. A person answers each item once, with a class or "can't tell".

Rules the database holds as well as this code: an answer to an item that does not exist is 404; a second answer to
an item is 409 and the stored answer stays (a trigger refuses any change to a stored answer); an answer to a
finished set is 409. The figures (:func:`diffsem.calibration.figures`) are shown only once the set is finished, so
a person never sees a score while judging. A set can be exported for offline judging (a PNG sheet and an answer
form; the key stays here), but not while it is being judged on the page: the sheet shows every item at once.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import HTTPException
from PIL import Image, ImageDraw
from pydantic import BaseModel, Field

from control_panel.store import Store
from diffsem.calibration import CANT_TELL, CHECK, RECONSTRUCTION, Answered, figures
from diffsem.pools import PoolError, pool_files, pool_summary, read_pool

MAX_ITEMS = 500
MAX_CHECKS = 50
MAX_SETS = 10_000  # sets kept in the database (each up to MAX_ITEMS + MAX_CHECKS small images)
CANT_TELL_WORDS = ("cant_tell", "can't tell", "?", "x")
SHEET_SCALE, SHEET_COLUMNS = 3, 10
OPEN, JUDGING, FINISHED = "open", "judging", "finished"


class SetRequest(BaseModel):
    """A new blind set from a pool."""

    pool: str = Field(description="a pool's name (GET /api/judging/pools)")
    n: int = Field(40, ge=1, le=MAX_ITEMS, description="reconstructions to judge, drawn at random from the pool")
    checks: int = Field(5, ge=0, le=MAX_CHECKS, description="clean attention-check images mixed in")


class AnswerRequest(BaseModel):
    """One answer: the item's position and a class index, or "can't tell"."""

    item: int = Field(description="the item's position in the set, from 0")
    answer: int | str = Field(description="a class index (0-9), or 'cant_tell'")


def parse_answer(value: int | str, classes: int) -> int:
    """A class index or :data:`CANT_TELL`; 422 naming what is accepted."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in CANT_TELL_WORDS:
            return CANT_TELL
        if not text.isdigit():
            raise HTTPException(422, f"answer {value!r}: give a class index 0-{classes - 1} or 'cant_tell'")
        value = int(text)
    if not 0 <= value < classes:
        raise HTTPException(422, f"answer {value}: give a class index 0-{classes - 1} or 'cant_tell'")
    return value


def png_data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class HumanJudging:
    """Judging sets in the panel's store, drawn from the pools in ``pools`` (a folder, or None: no pools)."""

    def __init__(self, store: Store, pools: Path | None):
        self.store, self.pools = store, pools

    # ---- pools and sets --------------------------------------------------------------------------------------
    def list_pools(self) -> list[dict[str, Any]]:
        return [pool_summary(self.pools, name) for name in pool_files(self.pools)]

    def create(self, req: SetRequest) -> dict[str, Any]:
        """Draw a set: ``req.n`` reconstructions and ``req.checks`` checks, in an order from the OS's randomness."""
        try:
            pool = read_pool(self.pools, req.pool)
        except PoolError as exc:
            raise HTTPException(404, str(exc)) from None
        if req.n > len(pool.labels) or req.checks > len(pool.check_labels):
            raise HTTPException(422, f"pool {pool.name!r} has {len(pool.labels)} reconstructions and "
                                     f"{len(pool.check_labels)} check images; asked for {req.n} and {req.checks}")
        if self.store.conn.execute("SELECT COUNT(*) FROM judging_sets").fetchone()[0] >= MAX_SETS:
            raise HTTPException(429, f"{MAX_SETS} judging sets are stored (the limit)")
        rng = secrets.SystemRandom()
        chosen = [(RECONSTRUCTION, i) for i in rng.sample(range(len(pool.labels)), req.n)]
        chosen += [(CHECK, i) for i in rng.sample(range(len(pool.check_labels)), req.checks)]
        rng.shuffle(chosen)
        set_id, now = uuid.uuid4().hex, time.time()
        card = {**pool_summary(self.pools, pool.name), "figures": pool.card.get("figures")}
        rows = []
        for pos, (kind, i) in enumerate(chosen):
            if kind == RECONSTRUCTION:
                judges = {name: int(lab[i]) for name, lab in pool.judge_labels.items()}
                rows.append((set_id, pos, kind, i, int(pool.labels[i]), json.dumps(judges), png(pool.images[i])))
            else:
                rows.append((set_id, pos, kind, i, int(pool.check_labels[i]), "{}", png(pool.checks[i])))
        with self.store.transaction() as c:
            c.execute("INSERT INTO judging_sets(id, pool, created, items, card) VALUES (?, ?, ?, ?, ?)",
                      (set_id, pool.name, now, len(rows), json.dumps(card)))
            c.executemany("INSERT INTO judging_items(set_id, pos, kind, pool_index, truth, judges, image) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return self.get(set_id)

    def _set_row(self, set_id: str) -> tuple[str, float, int, float | None, dict[str, Any]]:
        row = self.store.conn.execute("SELECT pool, created, items, exported, card FROM judging_sets WHERE id=?",
                                      (set_id,)).fetchone()
        if row is None:
            raise HTTPException(404, f"no judging set {set_id!r}")
        return row[0], row[1], row[2], row[3], json.loads(row[4])

    def _answered(self, set_id: str) -> int:
        return int(self.store.conn.execute("SELECT COUNT(*) FROM judging_items WHERE set_id=? AND answer IS NOT NULL",
                                           (set_id,)).fetchone()[0])

    @staticmethod
    def _status(answered: int, items: int) -> str:
        return FINISHED if answered == items else JUDGING if answered else OPEN

    def get(self, set_id: str) -> dict[str, Any]:
        """The set's status; its figures once it is finished (never before: judging stays blind)."""
        pool, created, items, exported, card = self._set_row(set_id)
        answered = self._answered(set_id)
        status = self._status(answered, items)
        out = {"id": set_id, "pool": {k: v for k, v in card.items() if k != "figures"}, "created": created,
               "items": items, "answered": answered, "status": status, "exported": exported}
        if status == FINISHED:
            out["figures"] = figures(self._items(set_id))
            out["pool_figures"] = card.get("figures")
        return out

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        ids = [r[0] for r in self.store.conn.execute("SELECT id FROM judging_sets ORDER BY created DESC, id "
                                                     "LIMIT ? OFFSET ?", (limit, offset))]
        return [self.get(i) for i in ids]

    def _items(self, set_id: str) -> list[Answered]:
        """The answered items of one set, with their keys."""
        rows = self.store.conn.execute(
            "SELECT kind, truth, answer, judges FROM judging_items WHERE set_id=? AND answer IS NOT NULL ORDER BY pos",
            (set_id,)).fetchall()
        return [Answered(kind, truth, answer, json.loads(judges)) for kind, truth, answer, judges in rows]

    # ---- judging ---------------------------------------------------------------------------------------------
    def next_item(self, set_id: str) -> dict[str, Any]:
        """The first unanswered item (its position and image, nothing else), or ``done`` when the set is finished."""
        _, _, items, _, card = self._set_row(set_id)
        row = self.store.conn.execute("SELECT pos, image FROM judging_items WHERE set_id=? AND answer IS NULL "
                                      "ORDER BY pos LIMIT 1", (set_id,)).fetchone()
        answered = self._answered(set_id)
        if row is None:
            return {"id": set_id, "done": True, "answered": answered, "items": items}
        return {"id": set_id, "done": False, "item": row[0], "image": png_data_url(row[1]), "answered": answered,
                "items": items, "classes": card.get("classes")}

    def answer(self, set_id: str, req: AnswerRequest, source: str = "page") -> dict[str, Any]:
        """Store one answer (rules: module docstring) and return the next item."""
        self._store_answers(set_id, [(req.item, req.answer)], source)
        return self.next_item(set_id)

    def _store_answers(self, set_id: str, answers: list[tuple[int, int | str]], source: str) -> None:
        """Validate every answer, then store them all in one transaction (or none)."""
        _, _, items, _, card = self._set_row(set_id)
        classes = len(card.get("classes") or range(10))
        answered = self._answered(set_id)
        if answered == items:
            raise HTTPException(409, f"judging set {set_id} is finished ({items} of {items} items answered); its "
                                     "answers are final")
        parsed, seen = [], set()
        for pos, value in answers:
            row = self.store.conn.execute("SELECT answer FROM judging_items WHERE set_id=? AND pos=?",
                                          (set_id, pos)).fetchone()
            if row is None:
                raise HTTPException(404, f"judging set {set_id} has no item {pos}; items are 0-{items - 1}")
            if row[0] is not None or pos in seen:
                raise HTTPException(409, f"item {pos} of judging set {set_id} is already answered; a stored answer "
                                         "is final")
            seen.add(pos)
            parsed.append((parse_answer(value, classes), pos))
        now = time.time()
        with self.store.transaction() as c:
            c.executemany("UPDATE judging_items SET answer=?, answered=?, source=? WHERE set_id=? AND pos=? "
                          "AND answer IS NULL", [(a, now, source, set_id, pos) for a, pos in parsed])

    def answers(self, set_id: str) -> dict[str, Any]:
        """A finished set's answers and keys, by position (409 before: the key is not shown while judging)."""
        _, _, items, _, _ = self._set_row(set_id)
        answered = self._answered(set_id)
        if answered < items:
            raise HTTPException(409, f"judging set {set_id} is not finished ({answered} of {items} items answered); "
                                     "its key is shown once every item is answered")
        rows = self.store.conn.execute("SELECT pos, kind, pool_index, truth, answer, judges, answered, source FROM "
                                       "judging_items WHERE set_id=? ORDER BY pos", (set_id,)).fetchall()
        return {"id": set_id, "cant_tell": CANT_TELL, "items": [
            {"item": pos, "kind": kind, "pool_index": idx, "truth": truth, "answer": ans, "judges": json.loads(j),
             "answered": at, "source": src} for pos, kind, idx, truth, ans, j, at, src in rows]}

    # ---- offline judging -------------------------------------------------------------------------------------
    def _exportable(self, set_id: str) -> tuple[int, dict[str, Any]]:
        _, _, items, _, card = self._set_row(set_id)
        answered = self._answered(set_id)
        if self._status(answered, items) == JUDGING:
            raise HTTPException(409, f"judging set {set_id} is being judged on the page ({answered} of {items} items "
                                     "answered): a sheet shows every item at once, so it is exported before the first "
                                     "answer or after the last")
        with self.store.transaction() as c:
            c.execute("UPDATE judging_sets SET exported=COALESCE(exported, ?) WHERE id=?", (time.time(), set_id))
        return items, card

    def sheet(self, set_id: str) -> bytes:
        """A PNG of every item, numbered by position, 10 a row (each 28 px image scaled x3); no label anywhere."""
        items, _ = self._exportable(set_id)
        images = [Image.open(io.BytesIO(r[0])) for r in self.store.conn.execute(
            "SELECT image FROM judging_items WHERE set_id=? ORDER BY pos", (set_id,))]
        side, label = 28 * SHEET_SCALE, 14
        cols = min(SHEET_COLUMNS, items)
        sheet = Image.new("L", (cols * (side + 6), -(-items // cols) * (side + label + 6)), 255)
        draw = ImageDraw.Draw(sheet)
        for pos, img in enumerate(images):
            x, y = (pos % cols) * (side + 6) + 3, (pos // cols) * (side + label + 6) + 3
            draw.text((x, y), str(pos), fill=0)
            sheet.paste(img.resize((side, side), Image.Resampling.NEAREST), (x, y + label))
        buf = io.BytesIO()
        sheet.save(buf, format="PNG")
        return buf.getvalue()

    def form(self, set_id: str) -> str:
        """A blank CSV answer form: ``item,answer``, one line per item."""
        items, card = self._exportable(set_id)
        classes = card.get("classes") or [str(i) for i in range(10)]
        head = (f"# judging set {set_id}: write a class index 0-{len(classes) - 1} or cant_tell after each item; "
                "classes: " + ", ".join(f"{i}={c}" for i, c in enumerate(classes)) + "\n")
        return head + "item,answer\n" + "".join(f"{pos},\n" for pos in range(items))

    def submit_form(self, set_id: str, text: str) -> dict[str, Any]:
        """Store a filled form's answers, all or none (blank lines are skipped; a bad line is 422 with its number)."""
        answers: list[tuple[int, int | str]] = []
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        for number, row in enumerate(csv.reader(lines), start=1):
            if [c.strip() for c in row] == ["item", "answer"]:
                continue
            if len(row) != 2 or not row[0].strip().isdigit():
                raise HTTPException(422, f"form line {number}: expected 'item,answer' with an item number")
            if row[1].strip():
                answers.append((int(row[0]), row[1]))
        if not answers:
            raise HTTPException(422, "the form has no answers")
        self._store_answers(set_id, answers, "form")
        return self.get(set_id)

    # ---- the calibration report ------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        """Every finished set's answers pooled per pool, and over all pools: the human figures and each judge's
        calibration (how many answers they rest on is ``answers``)."""
        finished = [r[0] for r in self.store.conn.execute(
            "SELECT s.id FROM judging_sets s WHERE s.items = (SELECT COUNT(*) FROM judging_items i "
            "WHERE i.set_id = s.id AND i.answer IS NOT NULL) ORDER BY s.created")]
        by_pool: dict[str, list[Answered]] = {}
        for set_id in finished:
            pool = self._set_row(set_id)[0]
            by_pool.setdefault(pool, []).extend(self._items(set_id))
        every = [it for items in by_pool.values() for it in items]
        return {"sets": len(finished), "pools": {p: figures(items) for p, items in by_pool.items()},
                "all": figures(every)}
