"""The query side of the PostgreSQL backend (:class:`~qtasks_fast.abc.query.TaskQueries`), as SQLite's: every page
reads the view ``tasks`` (migration 5: the records, plus the queued and running tasks, which are their message
alone; those are few next to the finished ones and are read without an index of their own) and is an index walk of
``records`` (``(app, queue, status, created, uuid)``, ``(app, queue, task_name, created,
uuid)``, the finish-time index, ``restart_of``), one per queue (and per status when the filter names none),
merged here. The worker, error-text and finished-time filters are checked on the rows the walk visits, down to
a bounded stop as on SQLite (``partial`` pages, TaskPage); the error search uses
the server's ``lower()`` (Unicode-aware under a UTF-8 database). The event feed is
:mod:`~qtasks_fast.backends.postgres.feed`; a blocked reader re-reads every 50 ms at most (readers only; the
hot path pays no NOTIFY for the feed).
"""

from __future__ import annotations

import asyncio
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
from qtasks_fast.backends.postgres import feed
from qtasks_fast.backends.postgres.db import now_ms
from qtasks_fast.backends.postgres.records import pg_text
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
)
from qtasks_fast.schemas import Envelope

if TYPE_CHECKING:
    from qtasks_fast.backends.postgres.db import PgDb
    from qtasks_fast.schemas import Task

_env_decode = msgspec.msgpack.Decoder(Envelope).decode
#: the status a task reads as: ``process`` is ``new`` with a start time (the view ``tasks`` shows a claimed message
#: so; records written by schema 4's claim, and a foreign broker's ``mark_started``, store it so too)
STATUS = "CASE WHEN status = 'new' AND started IS NOT NULL THEN 'process' ELSE status END"
_SUMMARY = (f"uuid, task_name, queue, {STATUS} AS status, envelope, created, started, finished, worker_id, traceback,"
            " deliveries, retry_child, restart_of")
POLL_MIN, POLL_MAX = 0.005, 0.05


def where(f: TaskFilter, now: int, params: list[Any], ignore_status: bool = False) -> str:
    """SQL conditions for ``f`` (unexpired records only); appends their values to ``params`` ($n numbered on)."""

    def arg(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    sql = [f"(expires_at IS NULL OR expires_at > {arg(now)})"]
    if f.status is not None and not ignore_status:  # new and process share the stored 'new' (the status index)
        stored = "new" if f.status == "process" else f.status
        sql.append(f"status = {arg(stored)}")
        if stored == "new":
            sql.append("started IS NOT NULL" if f.status == "process" else "started IS NULL")
    if f.task_name is not None:
        sql.append(f"task_name = {arg(f.task_name)}")
    if f.worker_id is not None:  # exactly, or a bare worker id: every "<id>-<digits>"
        sql.append(f"(worker_id = {arg(f.worker_id)} OR worker_id ~ {arg('^' + _regex(f.worker_id) + '-[0-9]+$')})")
    if f.error_contains:
        sql.append(f"strpos(lower(traceback), lower({arg(f.error_contains)})) > 0")
    for column, after, before in (("created", f.created_after, f.created_before),
                                  ("finished", f.finished_after, f.finished_before)):
        if after is not None:
            sql.append(f"{column} >= {arg(to_ms(after))}")
        if before is not None:
            sql.append(f"{column} < {arg(to_ms(before))}")
    return " AND ".join(sql)


def _range(after: tuple[int, str] | None, down_to: tuple[int, str] | None, params: list[Any]) -> str:
    """SQL (appended to a condition) for rows older than a cursor's ``after`` and not older than ``down_to``."""
    sql = ""
    for op, at in (("<", after), (">=", down_to)):
        if at is not None:
            sql += f" AND (created, uuid) {op} (${len(params) + 1}, ${len(params) + 2})"
            params += list(at)
    return sql


def _regex(text: str) -> str:
    """``text`` as a literal inside a POSIX regular expression."""
    return "".join("\\" + c if not c.isalnum() else c for c in text)


def _queues(queues: Sequence[str], f: TaskFilter) -> list[str]:
    if f.queue is None:
        return list(dict.fromkeys(queues))
    return [f.queue] if f.queue in queues else []


def _summary(r: Any) -> TaskSummary:
    env = _env_decode(r["envelope"])
    started, finished = r["started"], r["finished"]
    return TaskSummary(uuid=r["uuid"], task_name=r["task_name"], queue=r["queue"], status=r["status"],
                       priority=env.priority, created_at=r["created"] / 1000,
                       started_at=None if started is None else started / 1000,
                       finished_at=None if finished is None else finished / 1000, worker_id=r["worker_id"],
                       error=error_line(r["traceback"]) if r["status"] == "error" else None,
                       deliveries=r["deliveries"] or 1, retry_parent_uuid=env.retry_parent_uuid,
                       retry_child_uuid=r["retry_child"], restart_of=r["restart_of"])


class PgQueries(TaskQueries):
    """:class:`TaskQueries` on ``records``/``event_batches`` (mixed into ``PgStorage``)."""

    db: PgDb
    app_name: str

    if TYPE_CHECKING:  # PgStorage's
        async def get(self, uuid: str, queues: Sequence[str]) -> Task | None: ...

        async def get_logs(self, uuid: str, queue: str) -> list[str]: ...

    #: records a search by a filter no index narrows examines at most per request (tests set it small)
    scan_budget: int = SCAN_BUDGET

    async def list_tasks(self, queues: Sequence[str], filter: TaskFilter, limit: int = 50,
                         cursor: str | None = None) -> TaskPage:
        check_limit(limit)
        after, now = decode_cursor(cursor), now_ms()
        if after is not None:  # the uuid as stored (pg_text): a NUL in an edited cursor is a position, not a crash
            after = (after[0], pg_text(after[1]))
        walks = [filter] if filter.status is not None or filter.task_name is not None else [
            msgspec.structs.replace(filter, status=s) for s in STATUSES]
        mine = _queues(queues, filter)
        stops: list[tuple[int, str]] = []
        if unindexed(filter):  # a bounded search: down to the share-th candidate of each walk at most
            share = max(1, self.scan_budget // max(1, len(mine) * len(walks)))
            for f in walks:
                for q in mine:
                    stop = await self._stop(q, f, after, now, share)
                    if stop is not None:
                        stops.append(stop)
        frontier = max(stops) if stops else None
        rows: list[Any] = []
        for f in walks:
            for q in mine:
                params: list[Any] = [self.app_name, q]
                cond = where(f, now, params) + _range(after, frontier, params)
                params.append(limit + 1)
                rows += await self.db.fetch(f"SELECT {_SUMMARY} FROM tasks WHERE app = $1 AND queue = $2"  # noqa: S608
                                            f" AND {cond} ORDER BY created DESC, uuid DESC LIMIT ${len(params)}",
                                            *params)
        rows.sort(key=lambda r: (r["created"], r["uuid"]), reverse=True)
        if frontier is not None:  # complete down to the highest stop only
            rows = [r for r in rows if (r["created"], r["uuid"]) >= frontier]
            if len(rows) <= limit:
                return TaskPage(tasks=[_summary(r) for r in rows], cursor=encode_cursor(*frontier), partial=True,
                                searched=await self._searched(mine, walks, frontier, now))
        more = len(rows) > limit
        rows = rows[:limit]
        return TaskPage(tasks=[_summary(r) for r in rows],
                        cursor=encode_cursor(rows[-1]["created"], rows[-1]["uuid"]) if more else None)

    async def _stop(self, q: str, f: TaskFilter, after: tuple[int, str] | None, now: int,
                    share: int) -> tuple[int, str] | None:
        """The ``share``-th candidate (by the index part of ``f``) of queue ``q`` after ``after`` when another
        follows it: where a bounded search of ``f`` stops (None: the walk reaches the end)."""
        params: list[Any] = [self.app_name, q]
        cond = where(indexed_part(f), now, params) + _range(after, None, params)
        params.append(share - 1)
        got = await self.db.fetch(f"SELECT created, uuid FROM tasks WHERE app = $1 AND queue = $2 AND {cond}"  # noqa: S608
                                  f" ORDER BY created DESC, uuid DESC LIMIT 2 OFFSET ${len(params)}", *params)
        return (int(got[0]["created"]), str(got[0]["uuid"])) if len(got) == 2 else None

    async def _searched(self, queues: Sequence[str], walks: Sequence[TaskFilter], frontier: tuple[int, str],
                        now: int) -> int:
        """Candidates from the newest down to ``frontier``: what the search has covered (this page and before)."""
        n = 0
        for f in walks:
            for q in queues:
                params: list[Any] = [self.app_name, q]
                cond = where(indexed_part(f), now, params) + _range(None, frontier, params)
                n += int(await self.db.fetchval(f"SELECT count(*) FROM tasks WHERE app = $1 AND queue = $2"  # noqa: S608
                                                f" AND {cond}", *params))
        return n

    async def count_tasks(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        qs = _queues(queues, filter)
        if not qs:
            return counts
        if unindexed(filter):  # checked record by record: count the matches of a bounded search
            every = msgspec.structs.replace(filter, status=None)
            walks = [msgspec.structs.replace(filter, status=st) for st in STATUSES]

            async def searched_to(at: tuple[int, str]) -> int:
                return await self._searched(qs, walks, at, now_ms())
            return await bounded_counts(lambda c: self.list_tasks(queues, every, MAX_LIMIT, c), searched_to,
                                        self.scan_budget)
        params: list[Any] = [self.app_name, qs]
        cond = where(filter, now_ms(), params, ignore_status=True)
        for r in await self.db.fetch(f"SELECT {STATUS} AS status, count(*) AS n FROM tasks WHERE app = $1"  # noqa: S608
                                     f" AND queue = ANY($2::text[]) AND {cond} GROUP BY 1", *params):
            counts[r["status"]] = counts.get(r["status"], 0) + r["n"]
        return counts

    async def task_detail(self, uuid: str, queues: Sequence[str]) -> TaskDetail | None:
        task = await self.get(uuid, queues)
        if task is None:
            return None
        app = self.app_name
        times = (await self.db.fetch("SELECT started, finished FROM tasks WHERE uuid = $1 AND app = $2",
                                     uuid, app))[0]
        back: list[str] = []
        parent = None if task.retry_parent_uuid is None else str(task.retry_parent_uuid)
        while parent is not None and parent not in back:
            blob = await self.db.fetchval("SELECT envelope FROM tasks WHERE uuid = $1 AND app = $2", parent, app)
            if blob is None:
                break
            back.append(parent)
            parent = _env_decode(blob).retry_parent_uuid
        chain = [*reversed(back), uuid]
        child = None if task.retry_child_uuid is None else str(task.retry_child_uuid)
        while child is not None and child not in chain:
            rows = await self.db.fetch("SELECT retry_child FROM tasks WHERE uuid = $1 AND app = $2", child, app)
            if not rows:
                break
            chain.append(child)
            child = rows[0]["retry_child"]
        restarts = await self.db.fetch("SELECT uuid FROM tasks WHERE restart_of = $1 AND app = $2"
                                       " ORDER BY created, uuid", uuid, app)
        started, finished = times["started"], times["finished"]
        return TaskDetail(task=task, started_at=None if started is None else started / 1000,
                          finished_at=None if finished is None else finished / 1000, retry_chain=chain,
                          restarts=[r["uuid"] for r in restarts], logs=await self.get_logs(uuid, task.queue))

    async def events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                     block: float = 0.0) -> EventPage:
        check_limit(limit)
        start = await feed.parse_after(self.db, after)
        deadline = time.monotonic() + block
        delay = POLL_MIN
        while True:
            events = await feed.read(self.db, self.app_name, queues, start, limit)
            left = deadline - time.monotonic()
            if events or left <= 0:
                break
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)
        return EventPage(events=events, cursor=events[-1].id if events else feed.position(start))

    async def throughput(self, queues: Sequence[str], minutes: int = 15) -> list[ThroughputPoint]:
        window = minute_window(minutes)
        counts: dict[tuple[int, str], int] = {}
        for r in await self.db.fetch(
                "SELECT finished / 60000 * 60 AS minute, status, count(*) AS n FROM records WHERE app = $1"
                " AND queue = ANY($2::text[]) AND finished >= $3 AND status IN ('success', 'error', 'cancel')"
                " GROUP BY 1, 2", self.app_name, list(dict.fromkeys(queues)), window[0] * 1000):
            counts[(int(r["minute"]), r["status"])] = counts.get((int(r["minute"]), r["status"]), 0) + r["n"]
        return throughput_points(window, counts)
