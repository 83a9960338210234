"""What a watch stream's page shows, read from the query side a few times a second: a digest per distinct watch.

Why not the events: a watched page (the Tasks table filtered on a task name, a task's page) needs to know that
something it shows changed, not each event of the fleet. Matching every event meant reading every event (3 per
task: 120,000 a second at 40,000 tasks/s, ~2.3 µs each in the web process) while a single such tab was open: on
a machine whose cores the workers use, that CPU came straight out of the drain (issue 13). A poll costs per tick
and distinct filter what one refresh of that page costs, whatever the event rate: at most every
:data:`POLL_GAP` seconds, and only when the feed's newest event moved (the feed's reader checks that with one
event read a turn), each due :class:`Poll` reads

- for its fields (task name, queue, worker, status): the page of that filter its table shows (``list_tasks``
  with the watch's ``limit`` and ``cursor``: a table paged back, or longer than the default page, hears its own
  rows; uuid and status: what the live region of its table shows; a task entering the page, or leaving it, or a
  row changing status, changes them). Not ``count_tasks``: the status tabs are outside the live region, and
  counting a filter costs Redis a walk of the backlog (~30 ms of the broker the fleet drains through at 20,000
  queued tasks, measured);
- for its uuids, when no indexed filter covers them (a task's page, the rows of a table filtered on a worker):
  each record's status, worker and deliveries (``storage.get``: the storage contract has no read of many
  records at once; shared by every watch of the tick naming it, at most :data:`READS` at a time, well under
  PostgreSQL's pool the pages share, and ~0.2 ms of CPU each on Redis, so they are read only there; a table
  filtered on a status names no rows: its page, read above, holds them);
- with neither (every event matches): the feed's newest event itself;

and a follower is told ``changed`` when that digest differs from the previous tick's (Sidekiq's and Oban's web
dashboards poll the same way). Polls of equal watches are one poll: a hundred tabs on one page cost one read.

What a tick's ids mean: ``tip`` is the feed's newest event read *before* the tick's queries (every event up to it
is in the digest: a resume point that misses nothing), ``changed`` the feed's newest read *after* them (the id of a
``changed`` frame: a page that fetches itself on that frame sees everything up to it).

A tick's failure is its polls': a query that fails (the broker away) is kept on the polls that read it
(:attr:`Poll.error`, told to their followers only, retried after :data:`POLL_GAP`); the other polls of the tick,
and the feed's followers of events, never hear of it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import query
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.control import checked_uuid
from qtasks_fast.exceptions import InvalidTaskId
from qtasks_fast.log import get_logger
from qtasks_fast.service.errors import ServiceError, Unavailable
from qtasks_fast.service.guard import translated
from qtasks_fast.service.watch import Watch

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("feed")
#: seconds between two ticks of one poll at least: with the reader's turn (a quarter second) and a query, a change
#: is on screen within a second even right after a tick (a follower's frames are still at most one per 0.8 s)
POLL_GAP = 0.5
#: records read at once for the uuids of a tick (a task page's one, a table's up to 100 each): well under the
#: 4 connections of a PostgreSQL storage's pool, which the pages' requests share
READS = 2

_encode = msgspec.json.Encoder().encode


class Poll:
    """One distinct :class:`Watch`'s digest, shared by every follower with an equal watch."""

    __slots__ = ("at", "changed", "changes", "digest", "error", "ticks", "tip", "tip_probe", "users", "watch", "woken")

    def __init__(self, watch: Watch) -> None:
        self.watch, self.users = watch, 0
        #: the last tick's digest (None: no tick yet: a follower waits for one before it starts)
        self.digest: bytes | None = None
        #: the feed's newest event before the last tick's queries, and after them when the digest changed
        self.tip = self.changed = ""
        #: the number of the feed's read ``tip`` came from (:attr:`Feed.probes`: orders tips and resume points)
        self.tip_probe = 0
        #: digest changes, and ticks, so far (a follower compares them with what it saw)
        self.changes = self.ticks = 0
        #: loop time of the last tick
        self.at = -math.inf
        #: why the last tick could not read this poll's digest (None: it could); its followers end with it
        self.error: ServiceError | None = None
        #: set (and replaced) at each change: what its followers wait on (not each turn of the feed's reader: a
        #: hundred tabs woken four times a second for nothing cost more than their polls)
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()
        self.woken = asyncio.Event()

    def fail(self, error: ServiceError, now: float) -> None:
        """A tick could not read the digest: its followers end with ``error``; the next tick after the gap retries."""
        self.error, self.at = error, now
        self.wake()

    def due(self, tip: str, now: float) -> bool:
        """The gap since the last tick is over and: no digest yet, the last tick failed, or the feed moved."""
        return now - self.at >= POLL_GAP and (self.digest is None or self.error is not None or tip != self.tip)


def _filter(fields: tuple[tuple[str, str], ...]) -> TaskFilter:
    f = dict(fields)
    return TaskFilter(task_name=f.get("task_name"), queue=f.get("queue"), worker_id=f.get("worker_id"),
                      status=f.get("status"))


async def _rows(app: BaseQueueTasks, fields: tuple[tuple[str, str], ...], page: tuple[int, str | None]) -> list[Any]:
    """A filter's part of a digest: the rows of the page its table shows (``page``: limit and cursor), uuid and
    status."""
    limit, cursor = page
    found = await query.list_tasks(app, _filter(fields), limit, cursor)
    return [[t.uuid, t.status] for t in found.tasks]


def _uuids(watch: Watch) -> frozenset[str]:
    """The uuids of ``watch`` whose records a digest reads: a task page's, and a worker-filtered table's rows. A
    table filtered otherwise names none (``static/live.js``): its page, read by :func:`_rows`, holds them."""
    fields, uuids, _ = watch.key
    return uuids if not fields or any(k == "worker_id" for k, _ in fields) else frozenset()


async def _records(app: BaseQueueTasks, uuids: list[str]) -> dict[str, Any]:
    """Each uuid's record as a page shows its changes (None: unknown, expired or no uuid at all), :data:`READS`
    at a time."""
    queues, storage = await app.all_queues(), app.storage
    found: dict[str, Any] = {}
    pending = iter(uuids)

    async def reader() -> None:
        for uuid in pending:  # one iterator for every reader: each uuid read once
            try:
                key = checked_uuid(uuid)
            except InvalidTaskId:  # not a uuid: no task has it
                found[uuid] = None
                continue
            task = await storage.get(key, queues)
            found[uuid] = None if task is None else [task.status, task.worker_id, task.deliveries,
                                                     task.retry_child_uuid]

    readers = [asyncio.ensure_future(reader()) for _ in range(min(READS, len(uuids)))]
    try:
        await asyncio.gather(*readers)
    finally:  # one failed: the others stop too (not left reading into the next tick on the pages' pool)
        for r in readers:
            r.cancel()
    return found


async def _read(read: Awaitable[Any]) -> Any:
    """What ``read`` answers, or the :class:`ServiceError` it failed with (kept on the polls that need it). An
    error the backend did not translate (a driver's own, for a filter it could not run) is logged and fails only
    the polls of this read: one watch's odd filter never ends the other watches' streams."""
    try:
        with translated():
            return await read
    except ServiceError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - kept on the polls that made this read, as a failure they are told
        log.exception("a watch poll's read failed")
        return Unavailable(f"the watch poll failed ({type(exc).__name__}); see the server's log")


async def tick(app: BaseQueueTasks, due: list[Poll], tip: str, probe: int, now: float,
               newest: Callable[[], Awaitable[str]]) -> None:
    """Read the digest of each poll of ``due`` (their equal fields and uuids read once), ``tip`` the feed's newest
    event before (from the feed's read number ``probe``); ``newest()`` reads the feed's newest after them (only
    when a digest changed). A read that fails fails the polls that need it (:attr:`Poll.fail`), not the others."""
    named = sorted({u for p in due for u in _uuids(p.watch)})
    records = await _read(_records(app, named)) if named else {}
    rows: dict[Any, Any] = {}
    digests: list[bytes | ServiceError] = []
    for p in due:
        fields, uuids, page = p.watch.key
        if not fields and not uuids:  # every event matches: the feed's newest is the digest
            digests.append(_encode(tip))
            continue
        if fields and (fields, page) not in rows:
            rows[fields, page] = await _read(_rows(app, fields, p.watch.page))
        mine, shown = _uuids(p.watch), rows.get((fields, page))
        failed = next((x for x in (shown, records if mine else None) if isinstance(x, ServiceError)), None)
        digests.append(failed or _encode([shown, [records[u] for u in sorted(mine)]]))
    moved = [isinstance(d, bytes) and p.digest is not None and d != p.digest for p, d in zip(due, digests)]
    after = await _read(newest()) if any(moved) else tip
    for p, d, change in zip(due, digests, moved):
        if change and isinstance(after, ServiceError):
            d = after  # no resume point for the change: a failure; the next tick sees the change again
        if isinstance(d, ServiceError):
            p.fail(d, now)
            continue
        first = p.digest is None  # the first digest wakes the followers waiting for it
        if change:
            p.changes += 1
            p.changed = after
        p.digest, p.tip, p.tip_probe, p.error, p.at = d, tip, probe, None, now
        p.ticks += 1
        if first or change:
            p.wake()
