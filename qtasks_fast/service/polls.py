"""What a watch stream's page shows, read from the query side a few times a second: a digest per distinct watch.

Why not the events: a watched page (the Tasks table filtered on a task name, a task's page) needs to know that
something it shows changed, not each event of the fleet. Matching every event meant reading every event (3 per
task: 120,000 a second at 40,000 tasks/s, ~2.3 µs each in the web process) while a single such tab was open: on
a machine whose cores the workers use, that CPU came straight out of the drain (issue 13). A poll costs per tick
and distinct filter what one refresh of that page costs, whatever the event rate: at most every
:data:`POLL_GAP` seconds, and only when the feed's newest event moved (the feed's reader checks that with one
event read a turn), each due :class:`Poll` reads

- for its fields (task name, queue, worker, status): the newest :data:`ROWS` rows of that filter (``list_tasks``:
  uuid and status: what the live region of its table shows; a task entering the filter, or leaving it, or a row
  changing status, changes them). Not ``count_tasks``: the status tabs are outside the live region, and
  counting a filter costs Redis a walk of the backlog (~30 ms of the broker the fleet drains through at 20,000
  queued tasks, measured);
- for its uuids, when no indexed filter covers them (a task's page, the rows of a table filtered on a worker):
  each record's status, worker and deliveries (one ``storage.get`` per uuid, shared by every watch of the tick
  naming it: ~0.2 ms of CPU each on Redis, so they are read only there; a table filtered on a status names its
  rows too, but they are its newest rows, read above);
- with neither (every event matches): the feed's newest event itself;

and a follower is told ``changed`` when that digest differs from the previous tick's (Sidekiq's and Oban's web
dashboards poll the same way). Polls of equal watches are one poll: a hundred tabs on one page cost one read.

What a tick's ids mean: ``tip`` is the feed's newest event read *before* the tick's queries (every event up to it
is in the digest: a resume point that misses nothing), ``changed`` the feed's newest read *after* them (the id of a
``changed`` frame: a page that fetches itself on that frame sees everything up to it).
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import query
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.control import checked_uuid
from qtasks_fast.exceptions import InvalidTaskId
from qtasks_fast.service.guard import translated
from qtasks_fast.service.watch import Watch

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: seconds between two ticks of one poll at least: with the reader's turn (a quarter second) and a query, a change
#: is on screen within a second even right after a tick (a follower's frames are still at most one per 0.8 s)
POLL_GAP = 0.5
#: rows of a filter's table a digest holds (the Tasks page's default page)
ROWS = 50
#: records read at once for the uuids of a tick (a task page's one, a table's up to 100 each)
BATCH = 50

_encode = msgspec.json.Encoder().encode


class Poll:
    """One distinct :class:`Watch`'s digest, shared by every follower with an equal watch."""

    __slots__ = ("at", "changed", "changes", "digest", "ticks", "tip", "users", "watch", "woken")

    def __init__(self, watch: Watch) -> None:
        self.watch, self.users = watch, 0
        #: the last tick's digest (None: no tick yet: a follower waits for one before it starts)
        self.digest: bytes | None = None
        #: the feed's newest event before the last tick's queries, and after them when the digest changed
        self.tip = self.changed = ""
        #: digest changes, and ticks, so far (a follower compares them with what it saw)
        self.changes = self.ticks = 0
        #: loop time of the last tick
        self.at = -math.inf
        #: set (and replaced) at each change: what its followers wait on (not each turn of the feed's reader: a
        #: hundred tabs woken four times a second for nothing cost more than their polls)
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()
        self.woken = asyncio.Event()

    def due(self, tip: str, now: float) -> bool:
        """No digest yet, or the feed moved since the last tick and the gap is over."""
        return self.digest is None or (tip != self.tip and now - self.at >= POLL_GAP)


def _filter(fields: tuple[tuple[str, str], ...]) -> TaskFilter:
    f = dict(fields)
    return TaskFilter(task_name=f.get("task_name"), queue=f.get("queue"), worker_id=f.get("worker_id"),
                      status=f.get("status"))


async def _rows(app: BaseQueueTasks, fields: tuple[tuple[str, str], ...]) -> list[Any]:
    """A filter's part of a digest: its newest rows, uuid and status (what its table's first page shows)."""
    flt = _filter(fields)
    page = await query.list_tasks(app, flt, ROWS)
    return [[t.uuid, t.status] for t in page.tasks]


def _uuids(watch: Watch) -> frozenset[str]:
    """The uuids of ``watch`` whose records a digest reads: a task page's, and a worker-filtered table's rows. A
    table filtered otherwise names its first page's rows (``static/live.js``): the filter's newest rows."""
    fields, uuids = watch.key
    return uuids if not fields or any(k == "worker_id" for k, _ in fields) else frozenset()


async def _records(app: BaseQueueTasks, uuids: list[str]) -> dict[str, Any]:
    """Each uuid's record as a page shows its changes (None: unknown, expired or no uuid at all)."""
    queues, storage = await app.all_queues(), app.storage

    async def one(uuid: str) -> Any:
        try:
            key = checked_uuid(uuid)
        except InvalidTaskId:  # not a uuid: no task has it
            return None
        task = await storage.get(key, queues)
        return None if task is None else [task.status, task.worker_id, task.deliveries, task.retry_child_uuid]

    found: dict[str, Any] = {}
    for i in range(0, len(uuids), BATCH):
        part = uuids[i:i + BATCH]
        found.update(zip(part, await asyncio.gather(*map(one, part))))
    return found


async def tick(app: BaseQueueTasks, due: list[Poll], tip: str, now: float, newest: Any) -> None:
    """Read the digest of each poll of ``due`` (their equal fields and uuids read once), ``tip`` the feed's newest
    event before; ``newest()`` reads the feed's newest after them (only when a digest changed)."""
    with translated():
        records = await _records(app, sorted({u for p in due for u in _uuids(p.watch)}))
        rows: dict[tuple[tuple[str, str], ...], list[Any]] = {}
        digests = []
        for p in due:
            fields, uuids = p.watch.key
            if fields and fields not in rows:
                rows[fields] = await _rows(app, fields)
            parts = [rows.get(fields), [records[u] for u in sorted(_uuids(p.watch))]]
            digests.append(_encode(parts if fields or uuids else tip))
        changed = any(p.digest is not None and d != p.digest for p, d in zip(due, digests))
        after = await newest() if changed else tip
    for p, d in zip(due, digests):
        moved = p.digest is None or d != p.digest  # the first digest wakes the followers waiting for it
        if p.digest is not None and moved:
            p.changes += 1
            p.changed = after
        p.digest, p.tip, p.at = d, tip, now
        p.ticks += 1
        if moved:
            p.wake()
