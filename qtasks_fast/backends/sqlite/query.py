"""The query side of the embedded SQLite backend (:class:`~qtasks_fast.abc.query.TaskQueries`).

Every read is answered from an index of ``records`` (see the schema in ``brokers/sqlite_db.py``):
``(app, queue, status, created, uuid)`` and ``(app, queue, task_name, created, uuid)`` for the status and
name filters, ``(app, queue, finished, status)`` for the finish-time bound and throughput, ``restart_of``
for restarts. A page is read per queue in index order (``LIMIT`` rows each, no sort of the matches) and
the queues are merged here, so a filtered page costs the same on 100 or 1,000,000 records. A list with
neither a status nor a name is the merge of one walk per status (five short index reads instead of a sixth
index that every enqueue would pay for). The worker, error-text and finished-time filters are checked on the
rows the index walk visits (no index narrows them), so that walk is bounded: each stops at its
``scan_budget / walks``-th candidate (an index ``OFFSET``), and a page that did not fill above the newest stop is
``partial`` (TaskPage), with a cursor that searches on.

The event feed is the ``event_batches`` table (one row per queue per written batch, see
:mod:`~qtasks_fast.backends.sqlite.feed`), written in the transaction of each status change; its ids count
up in commit order (writers take SQLite's write lock in turn), so "after id N" loses and repeats nothing
across queues. The worker's upkeep keeps the last :data:`~qtasks_fast.querylib.EVENTS_KEPT` events per queue.
A blocked reader watches ``PRAGMA data_version`` every 5-50 ms (no table read while nothing changes), as an
idle fetch does.

Times are kept in milliseconds; the filters' bounds are rounded to the millisecond.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.query import (
    EventPage,
    TaskDetail,
    TaskFilter,
    TaskPage,
    TaskQueries,
    TaskSummary,
    ThroughputPoint,
)
from qtasks_fast.backends.sqlite import feed
from qtasks_fast.backends.sqlite.db import SqliteConnection, now_ms
from qtasks_fast.backends.sqlite.held import Holder, held, holder, running
from qtasks_fast.querylib import (
    MAX_LIMIT,
    SCAN_BUDGET,
    STATUSES,
    bounded_counts,
    check_limit,
    decode_cursor,
    encode_cursor,
    error_line,
    indexed_part,
    minute_window,
    throughput_points,
    to_ms,
    unindexed,
    worker_matches,
)
from qtasks_fast.schemas import Envelope

if TYPE_CHECKING:
    from qtasks_fast.schemas import Task

_env_decode = msgspec.msgpack.Decoder(Envelope).decode
_SUMMARY = ("uuid, task_name, queue, status, envelope, created, started, finished, worker_id, traceback, deliveries,"
            " retry_child, restart_of")
#: first and longest pause of a blocked ``events`` reader between two looks at the file
POLL_MIN, POLL_MAX = 0.005, 0.05


def where(f: TaskFilter, now: int, ignore_status: bool = False) -> tuple[str, list[Any]]:
    """SQL conditions (after ``app = ? AND queue = ?``) and parameters for ``f``; unexpired records only."""
    sql = ["(expires_at IS NULL OR expires_at > ?)"]
    params: list[Any] = [now]
    if f.status is not None and not ignore_status:
        sql.append("status = ?")
        params.append(f.status)
    if f.task_name is not None:
        sql.append("task_name = ?")
        params.append(f.task_name)
    if f.worker_id is not None:  # exactly, or a bare worker id: every "<id>-<digits>"
        n = len(f.worker_id) + 1
        sql.append("(worker_id = ? OR (length(worker_id) > ? AND substr(worker_id, 1, ?) = ?"
                   " AND ltrim(substr(worker_id, ? + 1), '0123456789') = ''))")
        params += [f.worker_id, n, n, f.worker_id + "-", n]
    if f.error_contains:  # "" is contained in every text, a record without traceback included (querylib.matches)
        sql.append("instr(py_lower(traceback), ?) > 0")
        params.append(f.error_contains.lower())
    for column, after, before in (("created", f.created_after, f.created_before),
                                  ("finished", f.finished_after, f.finished_before)):
        if after is not None:
            sql.append(f"{column} >= ?")
            params.append(to_ms(after))
        if before is not None:
            sql.append(f"{column} < ?")
            params.append(to_ms(before))
    return " AND ".join(sql), params


def _queues(queues: Sequence[str], f: TaskFilter) -> list[str]:
    if f.queue is None:
        return list(dict.fromkeys(queues))
    return [f.queue] if f.queue in queues else []


def _summary(row: Sequence[Any]) -> TaskSummary:
    uuid, name, queue, status, blob, created, started, finished, worker, tb, deliveries, child, restart = row
    env = _env_decode(blob)
    return TaskSummary(uuid=uuid, task_name=name, queue=queue, status=status, priority=env.priority,
                       created_at=created / 1000, started_at=None if started is None else started / 1000,
                       finished_at=None if finished is None else finished / 1000, worker_id=worker,
                       error=error_line(tb) if status == "error" else None, deliveries=deliveries or 1,
                       retry_parent_uuid=env.retry_parent_uuid, retry_child_uuid=child, restart_of=restart)


class SqliteQueries(TaskQueries):
    """:class:`TaskQueries` on the ``records``/``events`` tables (mixed into ``SqliteStorage``)."""

    conn: SqliteConnection
    app_name: str

    if TYPE_CHECKING:  # SqliteStorage's
        def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None: ...

        def get_logs_sync(self, uuid: str, queue: str) -> list[str]: ...

    #: records a search by a filter no index narrows examines at most per request (tests set it small)
    scan_budget: int = SCAN_BUDGET

    def page_sql(self, f: TaskFilter, after: tuple[int, str] | None, now: int,
                 down_to: tuple[int, str] | None = None) -> tuple[str, list[Any]]:
        """The query of one queue's page (``?`` for app and queue first, the limit last); tests EXPLAIN it.
        ``down_to``: the oldest candidate a bounded search reaches (included)."""
        cond, params = where(f, now)
        if after is not None:
            cond += " AND (created, uuid) < (?, ?)"
            params += list(after)
        if down_to is not None:
            cond += " AND (created, uuid) >= (?, ?)"
            params += list(down_to)
        return (f"SELECT {_SUMMARY} FROM records WHERE app = ? AND queue = ? AND {cond}"  # noqa: S608 - fixed
                " ORDER BY created DESC, uuid DESC LIMIT ?", params)

    def _held_rows(self, f: TaskFilter, q: str, who: dict[str, Holder], after: tuple[int, str] | None,
                   now: int) -> list[Any]:
        """``(record row, running row)`` of the ``new`` records of ``q`` whose message is handed out (``who``)
        that match ``f`` but for its status and worker (checked by the caller on either row)."""
        if not who:
            return []
        cond, params = where(msgspec.structs.replace(f, status="new", worker_id=None), now)
        if after is not None:
            cond += " AND (created, uuid) < (?, ?)"
            params += list(after)
        rows = self.conn.read(f"SELECT {_SUMMARY} FROM records WHERE app = ? AND queue = ?"  # noqa: S608 - fixed
                              f" AND uuid IN (SELECT value FROM json_each(?)) AND {cond}",
                              (self.app_name, q, json.dumps(list(who)), *params))
        return [(r, running(r, 3, 8, 6, who[r[0]])) for r in rows]

    async def list_tasks(self, queues: Sequence[str], filter: TaskFilter, limit: int = 50,
                         cursor: str | None = None) -> TaskPage:
        """A ``new`` record whose message is handed out is listed as ``process`` (see held.py): the walks
        read past as many rows as are handed out, so dropping them from ``new`` still fills the page."""
        check_limit(limit)
        after, now = decode_cursor(cursor), now_ms()
        walks = [filter] if filter.status is not None or filter.task_name is not None else [
            msgspec.structs.replace(filter, status=s) for s in STATUSES]
        rows: list[Any] = []
        mine = _queues(queues, filter)
        share = max(1, self.scan_budget // max(1, len(mine) * len(walks)))
        stops: list[tuple[int, str]] = []
        for q in mine:
            who = held(self.conn, self.app_name, q)
            for f in walks:
                stop = self._stop(q, f, after, now, share) if unindexed(f) else None
                if stop is not None:
                    stops.append(stop)
            frontier = max(stops) if stops else None
            for f in walks:
                sql, params = self.page_sql(f, after, now, frontier)
                if f.status in (None, "new"):
                    rows += [r for r in self.conn.read(sql, (self.app_name, q, *params, limit + 1 + len(who)))
                             if not (r[3] == "new" and r[0] in who)]
                else:
                    rows += self.conn.read(sql, (self.app_name, q, *params, limit + 1))
                if f.status in (None, "process"):
                    rows += [r for _, r in self._held_rows(f, q, who, after, now)
                             if f.worker_id is None or worker_matches(f.worker_id, r[8])]
        rows.sort(key=lambda r: (r[5], r[0]), reverse=True)
        if stops:  # a bounded search stopped: complete down to the highest stop only
            frontier = max(stops)
            rows = [r for r in rows if (r[5], r[0]) >= frontier]
            if len(rows) <= limit:
                return TaskPage(tasks=[_summary(r) for r in rows], cursor=encode_cursor(*frontier), partial=True,
                                searched=self._searched(mine, walks, frontier, now))
        more = len(rows) > limit
        rows = rows[:limit]
        return TaskPage(tasks=[_summary(r) for r in rows],
                        cursor=encode_cursor(rows[-1][5], rows[-1][0]) if more else None)

    def _stop(self, q: str, f: TaskFilter, after: tuple[int, str] | None, now: int,
              share: int) -> tuple[int, str] | None:
        """The ``share``-th candidate (by the index part of ``f``) of queue ``q`` after ``after``: where a
        bounded search of ``f`` stops; None when none follows it (the walk reaches the end)."""
        cond, params = where(indexed_part(f), now)
        if after is not None:
            cond += " AND (created, uuid) < (?, ?)"
            params += list(after)
        got = self.conn.read(f"SELECT created, uuid FROM records WHERE app = ? AND queue = ? AND {cond}"  # noqa: S608
                             " ORDER BY created DESC, uuid DESC LIMIT 2 OFFSET ?",
                             (self.app_name, q, *params, share - 1))
        return (int(got[0][0]), str(got[0][1])) if len(got) == 2 else None  # one more after it: not the end

    def _searched(self, queues: Sequence[str], walks: Sequence[TaskFilter], frontier: tuple[int, str],
                  now: int) -> int:
        """Candidates from the newest down to ``frontier``: what the search has covered (this page and before)."""
        n = 0
        for q in queues:
            for f in walks:
                cond, params = where(indexed_part(f), now)
                n += self.conn.read(f"SELECT count(*) FROM records WHERE app = ? AND queue = ? AND {cond}"  # noqa: S608
                                    " AND (created, uuid) >= (?, ?)", (self.app_name, q, *params, *frontier))[0][0]
        return n

    async def count_tasks(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        if unindexed(filter):  # checked record by record: count the matches of a bounded search
            every = msgspec.structs.replace(filter, status=None)
            walks = [msgspec.structs.replace(filter, status=st) for st in STATUSES]

            async def searched_to(at: tuple[int, str]) -> int:
                return self._searched(_queues(queues, filter), walks, at, now_ms())
            return await bounded_counts(lambda c: self.list_tasks(queues, every, MAX_LIMIT, c), searched_to,
                                        self.scan_budget)
        return self._exact_counts(queues, filter)

    def _exact_counts(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        now = now_ms()
        cond, params = where(filter, now, ignore_status=True)
        for q in _queues(queues, filter):
            for status, n in self.conn.read(
                    f"SELECT status, count(*) FROM records WHERE app = ? AND queue = ? AND {cond}"  # noqa: S608
                    " GROUP BY status", (self.app_name, q, *params)):
                counts[status] = counts.get(status, 0) + n
            wanted = filter.worker_id
            for record, run in self._held_rows(filter, q, held(self.conn, self.app_name, q), None, now):
                if wanted is None or worker_matches(wanted, record[8]):
                    counts["new"] -= 1  # counted above as its record says
                if wanted is None or worker_matches(wanted, run[8]):
                    counts["process"] += 1
        return counts

    async def task_detail(self, uuid: str, queues: Sequence[str]) -> TaskDetail | None:
        task = self.get_sync(uuid, queues)
        if task is None:
            return None
        app = self.app_name
        started, finished = self.conn.read("SELECT started, finished FROM records WHERE uuid = ? AND app = ?",
                                           (uuid, app))[0]
        if task.status == "process" and (who := holder(self.conn, app, task.queue, uuid)) is not None:
            started = who[1] if who[1] is not None else started
        back: list[str] = []
        parent = None if task.retry_parent_uuid is None else str(task.retry_parent_uuid)
        while parent is not None and parent not in back:
            rows = self.conn.read("SELECT envelope FROM records WHERE uuid = ? AND app = ?", (parent, app))
            if not rows:
                break
            back.append(parent)
            parent = _env_decode(rows[0][0]).retry_parent_uuid
        chain = [*reversed(back), uuid]
        child = None if task.retry_child_uuid is None else str(task.retry_child_uuid)
        while child is not None and child not in chain:
            rows = self.conn.read("SELECT retry_child FROM records WHERE uuid = ? AND app = ?", (child, app))
            if not rows:
                break
            chain.append(child)
            child = rows[0][0]
        restarts = self.conn.read("SELECT uuid FROM records WHERE restart_of = ? AND app = ? ORDER BY created, uuid",
                                  (uuid, app))
        return TaskDetail(task=task, started_at=None if started is None else started / 1000,
                          finished_at=None if finished is None else finished / 1000, retry_chain=chain,
                          restarts=[r[0] for r in restarts], logs=self.get_logs_sync(uuid, task.queue))

    async def events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                     block: float = 0.0) -> EventPage:
        check_limit(limit)
        start = feed.parse_after(self.conn, after)
        deadline = time.monotonic() + block
        delay = POLL_MIN
        while True:
            version = self.conn.version()  # before the read: a commit after it shows as a change
            events = feed.read(self.conn, self.app_name, queues, start, limit)
            left = deadline - time.monotonic()
            if events or left <= 0:
                break
            while left > 0 and self.conn.version() == version:
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, POLL_MAX)
                left = deadline - time.monotonic()
        return EventPage(events=events, cursor=events[-1].id if events else feed.position(start))

    async def throughput(self, queues: Sequence[str], minutes: int = 15) -> list[ThroughputPoint]:
        """From the records' finish times (kept ``result_ttl``; ``delete_finished`` removes them from here too)."""
        window = minute_window(minutes)
        counts: dict[tuple[int, str], int] = {}
        for q in dict.fromkeys(queues):
            for minute, status, n in self.conn.read(
                    "SELECT finished / 60000 * 60, status, count(*) FROM records WHERE app = ? AND queue = ?"
                    " AND finished >= ? AND finished IS NOT NULL AND status IN ('success', 'error', 'cancel')"
                    " GROUP BY 1, 2", (self.app_name, q, window[0] * 1000)):
                counts[(minute, status)] = counts.get((minute, status), 0) + n
        return throughput_points(window, counts)
