"""The PostgreSQL event feed: one ``event_batches`` row per queue per written batch, read in commit-safe order.

Why not order by the ``bigserial`` id alone: ids are handed out when a row is inserted, not when its transaction
commits, so a reader could pass id 11 (committed) while id 10 is still in flight and skip it for good. Each row
also keeps ``tx``, the id of the transaction that wrote it (``pg_current_xact_id()``), and a reader returns only
rows whose ``tx`` is below the oldest transaction still running (``pg_snapshot_xmin(pg_current_snapshot())``),
in ``(tx, id)`` order: every transaction below that point has ended, so no row can appear later before a
position already read. The price: a write transaction left open on the server (by anyone, in any database:
transaction ids are the server's, not the database's) holds back the feed until it ends. No narrower horizon is
exact: a transaction may take its id long before it writes here (docs/postgres.md says what users see).

``items`` is ``json`` (schema 4; ``jsonb`` before): written once and read whole, it is kept as the text the
writer built, not parsed into ``jsonb``'s binary form on every claim, settle and enqueue.

An event's id is ``"<tx>.<row id>.<index in the row>"``; "after" it = the rest of that row, then every row
after ``(tx, row id)``. The worker's upkeep keeps the last :data:`~qtasks_fast.querylib.EVENTS_KEPT` events
per queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.querylib import event_number, invalid_event_id

#: the index given to "everything in this row" (``after="$"``, a position without an index)
_END = 1 << 62
Position = tuple[int, int, int]


async def parse_after(db: Any, after: str | None) -> Position:
    """``(tx, row id, index)`` after which to read; ``db`` is a PgDb."""
    if after is None:
        return 0, 0, _END
    if after == "$":
        row = await db.fetch("SELECT tx::text::bigint AS tx, id FROM event_batches ORDER BY tx DESC, id DESC LIMIT 1")
        return (int(row[0]["tx"]), int(row[0]["id"]), _END) if row else (0, 0, _END)
    parts = after.split(".")
    nums = [event_number(p) for p in parts]
    if len(parts) in (2, 3) and all(n is not None for n in nums):
        tx, rid = nums[0], nums[1]
        assert tx is not None and rid is not None
        return tx, rid, (nums[2] if len(nums) == 3 and nums[2] is not None else _END)
    raise invalid_event_id(after)


def position(start: Position) -> str:
    """The cursor of an empty page that resumes at ``start``."""
    tx, rid, index = start
    return f"{tx}.{rid}.{index}" if index != _END else f"{tx}.{rid}"


async def read(db: Any, app: str, queues: Sequence[str], start: Position, limit: int) -> list[TaskEvent]:
    """Up to ``limit`` events after ``start`` of ``queues``, oldest first."""
    tx0, rid0, index0 = start
    rows = await db.fetch(
        "SELECT tx::text::bigint AS tx, id, queue, at, items FROM event_batches WHERE app = $1"
        " AND queue = ANY($2::text[]) AND (tx, id) >= ($3::text::xid8, $4)"
        " AND tx < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx, id LIMIT $5",
        app, list(dict.fromkeys(queues)), str(tx0), rid0, limit + 1)
    events: list[TaskEvent] = []
    for r in rows:
        tx, rid = int(r["tx"]), int(r["id"])
        for i, (uuid, name, status, worker) in enumerate(json.loads(r["items"])):
            if (tx, rid) == (tx0, rid0) and i <= index0:
                continue
            events.append(TaskEvent(id=f"{tx}.{rid}.{i}", uuid=uuid, task_name=name, queue=r["queue"],
                                    status=status, at=r["at"] / 1000, worker_id=worker))
            if len(events) == limit:
                return events
    return events


TRIM = ("DELETE FROM event_batches WHERE app = $1 AND queue = $2 AND (tx, id) < (SELECT tx, id FROM (SELECT tx, id,"
        " sum(n) OVER (ORDER BY tx DESC, id DESC) AS c FROM event_batches WHERE app = $1 AND queue = $2) AS k"
        " WHERE c >= $3 ORDER BY tx DESC, id DESC LIMIT 1)")
