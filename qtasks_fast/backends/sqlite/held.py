"""Which tasks run right now: the handed-out ``messages`` rows, not the records.

A fused fetch writes no record (a record write and a ``records_status`` index move per task were the dearest
part of the query side on the hot path, see benchmarks/RESULTS.md): a record keeps ``new`` until settle
writes the final state, and while its message is handed out (``consumer`` set) the task reads as
``process`` on that consumer since the message's ``handed`` time, as Redis reads it from the pending list.
The handed-out messages of a queue are few (the consumers' prefetch), read through the ``messages_ready``
index (``app, queue, consumer``). Records written ``process`` by a foreign broker's fetch (or by an older
version) still read as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qtasks_fast.backends.sqlite.db import SqliteConnection

#: (consumer, handed ms) of a handed-out message
Holder = tuple[str, int | None]


def held(conn: SqliteConnection, app: str, queue: str) -> dict[str, Holder]:
    """``{uuid: (consumer, handed)}`` of the messages of ``queue`` handed out now."""
    return {u: (c, h) for u, c, h in conn.read(
        "SELECT uuid, consumer, handed FROM messages WHERE app = ? AND queue = ? AND consumer IS NOT NULL",
        (app, queue)) if u}


def holder(conn: SqliteConnection, app: str, queue: str, uuid: str) -> Holder | None:
    """The consumer running ``uuid`` (and since when), None when its message is not handed out."""
    rows = conn.read("SELECT consumer, handed FROM messages WHERE app = ? AND queue = ? AND consumer IS NOT NULL"
                     " AND uuid = ? LIMIT 1", (app, queue, uuid))
    return (rows[0][0], rows[0][1]) if rows else None


def running(row: Sequence[Any], status: int, worker: int, started: int, who: Holder) -> list[Any]:
    """``row`` (a ``new`` record) as the running task ``who`` holds: the columns at the given positions set."""
    out = list(row)
    out[status], out[worker] = "process", who[0]
    if who[1] is not None:
        out[started] = who[1]
    return out
