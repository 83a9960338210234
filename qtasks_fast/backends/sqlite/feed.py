"""The SQLite event feed: one ``event_batches`` row per queue per written batch, expanded by the reader.

Why batches: a row (and its index entry) per status change cost every task three row writes — ``new``,
``process``, the final one — and made enqueue/fetch/settle ~2x dearer than before the query side (measured
with ``python -m qtasks_fast.benchmarks.ab --suite sqlite``). Each enqueue, fetch, settle (and rare control
write) now adds one row per queue it touched, holding its changes as a msgpack list of ``[uuid, task_name,
status, worker_id]`` in the order they happened; ``at`` is the batch's time, ``n`` its length.

An event's id is ``"<row id>.<index in the row>"``. Rows are written inside the transaction of the change and
SQLite hands out row ids in commit order (writers take the write lock in turn), so "after ``R.I``" = the rest
of row R, then every row above R: nothing lost, nothing repeated, across queues. Row ids never go back (see
:func:`drop`). The worker's upkeep (:func:`trim`) keeps whole rows covering the last ``keep`` events per queue.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.querylib import event_number, invalid_event_id

#: one status change: queue, uuid, task name, status, worker id (None for ``new`` and unknown)
Change = tuple[str, str, str, str, str | None]
_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(list[tuple[str, str, str, str | None]]).decode
#: the index given to "everything in this row" (``after="$"``, an id without an index)
_END = 1 << 62
#: schema of the feed before it was batched (one row per change, written by triggers): dropped on open
RETIRED = ("DROP TRIGGER IF EXISTS records_event_final; DROP TRIGGER IF EXISTS records_event_update;"
           " DROP TABLE IF EXISTS events;")


def add(db: sqlite3.Connection, app: str, now: int, changes: Iterable[Change]) -> None:
    """Record ``changes`` (in order) as one row per queue, inside the caller's transaction."""
    by_queue: dict[str, list[tuple[str, str, str, str | None]]] = {}
    for queue, uuid, name, status, worker in changes:
        by_queue.setdefault(queue, []).append((uuid, name, status, worker))
    if by_queue:
        db.executemany("INSERT INTO event_batches (app, queue, at, n, items) VALUES (?, ?, ?, ?, ?)",
                       [(app, q, now, len(items), _encode(items)) for q, items in by_queue.items()])


def parse_after(db: Any, after: str | None) -> tuple[int, int]:
    """``(row id, index)`` after which to read; ``db`` is anything with ``read(sql)`` (a SqliteConnection)."""
    if after is None:
        return 0, _END
    if after == "$":
        return int(db.read("SELECT coalesce(max(id), 0) FROM event_batches")[0][0]), _END
    row, dot, index = after.partition(".")
    at, within = event_number(row), event_number(index) if dot else _END
    if at is not None and within is not None:
        return at, within
    raise invalid_event_id(after)


def position(start: tuple[int, int]) -> str:
    """The cursor of an empty page that resumes at ``start``."""
    row, index = start
    return f"{row}.{index}" if index != _END else str(row)


def read(conn: Any, app: str, queues: Sequence[str], start: tuple[int, int], limit: int) -> list[TaskEvent]:
    """Up to ``limit`` events after ``start`` of ``queues``, oldest first (``conn``: a SqliteConnection)."""
    row0, index0 = start
    rows: list[Any] = []
    for q in dict.fromkeys(queues):  # every row holds at least one event: limit + 1 rows are enough
        rows += conn.read("SELECT id, queue, at, items FROM event_batches WHERE app = ? AND queue = ? AND id >= ?"
                          " ORDER BY id LIMIT ?", (app, q, row0, limit + 1))
    rows.sort(key=lambda r: r[0])
    events: list[TaskEvent] = []
    for rid, queue, at, blob in rows:
        for i, (uuid, name, status, worker) in enumerate(_decode(blob)):
            if rid == row0 and i <= index0:
                continue
            events.append(TaskEvent(id=f"{rid}.{i}", uuid=uuid, task_name=name, queue=queue, status=status,
                                    at=at / 1000, worker_id=worker))
            if len(events) == limit:
                return events
    return events


def trim(db: sqlite3.Connection, app: str, queue: str, keep: int) -> None:
    """Delete the rows of ``queue`` older than the newest ones holding ``keep`` events (whole rows are kept)."""
    db.execute("DELETE FROM event_batches WHERE app = ?1 AND queue = ?2 AND id < (SELECT id FROM (SELECT id,"
               " sum(n) OVER (ORDER BY id DESC) AS c FROM event_batches WHERE app = ?1 AND queue = ?2)"
               " WHERE c >= ?3 ORDER BY id DESC LIMIT 1)", (app, queue, keep))


def drop(db: sqlite3.Connection, app: str) -> None:
    """Delete ``app``'s feed (``flush_all``) without letting row ids go back.

    Row ids are rowids (no AUTOINCREMENT: its bookkeeping row would cost every batch a write): a new row takes
    the largest id + 1, so deleting the newest rows would hand their ids out again and a reader resuming from
    one would skip the next events. When the newest row goes, an empty row of no app keeps its id.
    """
    top = db.execute("SELECT max(id) FROM event_batches").fetchone()[0]
    db.execute("DELETE FROM event_batches WHERE app = ?", (app,))
    if top is not None and db.execute("SELECT max(id) FROM event_batches").fetchone()[0] != top:
        db.execute("INSERT INTO event_batches (id, app, queue, at, n, items) VALUES (?, '', '', 0, 0, ?)",
                   (top, _encode([])))
