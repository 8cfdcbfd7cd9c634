"""Streaming a run's decisions out of the database, without holding them in memory."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator

from control_panel.store import MEMORY, connect

CHUNK = 4096


def decisions_json(path: str, writer: sqlite3.Connection, run_id: str, start: int, n: int) -> Iterator[str]:
    """``{"id", "start", "truth": [...], "listeners": {name: [...]}}`` for the run's ``n`` images from ``start``.

    Reads through its own read-only connection (a consistent snapshot beside the writer); a ``:memory:`` database
    has only the writer's connection. Iterate it on the panel's loop (:func:`on_loop`).
    """
    conn = writer if path == MEMORY else connect(path, readonly=True)
    try:
        yield json.dumps({"id": run_id, "start": start})[:-1] + ', "truth": '
        yield from _array(conn.execute("SELECT idx, label FROM messages WHERE run_id=? ORDER BY idx", (run_id,)),
                          start, n)
        yield ', "listeners": {'
        names = [r[0] for r in conn.execute("SELECT DISTINCT o.listener FROM outcomes o JOIN messages m "
                                            "ON m.seq = o.seq WHERE m.run_id=? ORDER BY o.listener", (run_id,))]
        for k, name in enumerate(names):
            yield ("" if k == 0 else ", ") + json.dumps(name) + ": "
            yield from _array(conn.execute(
                "SELECT m.idx, CASE WHEN o.lost THEN NULL ELSE o.label END FROM messages m JOIN outcomes o "
                "ON o.seq = m.seq AND o.listener = ? WHERE m.run_id=? ORDER BY m.idx", (name, run_id)), start, n)
        yield "}}"
    finally:
        if conn is not writer:
            conn.close()


def _array(rows: sqlite3.Cursor, start: int, n: int) -> Iterator[str]:
    """A JSON array of ``n`` values by index ``start + i``; indices without a row are null."""
    values: list[int | None] = []
    expected = start
    out = ["["]
    first = True
    for idx, value in rows:
        values.extend([None] * (idx - expected))
        values.append(value)
        expected = idx + 1
        if len(values) >= CHUNK:
            out.append(("" if first else ", ") + ", ".join(json.dumps(v) for v in values))
            first, values = False, []
            yield "".join(out)
            out = []
    values.extend([None] * (start + n - expected))
    if values:
        out.append(("" if first else ", ") + ", ".join(json.dumps(v) for v in values))
    out.append("]")
    yield "".join(out)


async def on_loop(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Iterate on the event loop (the connections belong to it), letting other work run between chunks."""
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)
