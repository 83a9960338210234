"""The query side on Redis (:class:`~qtasks_fast.abc.query.TaskQueries` for ``RedisStorage``).

Everything it reads is written by the broker's Lua inside the round trips it makes anyway (see redis.lua's
header: P:x zsets, P:ev, P:tp), so lists cost the hot path no command of its own. Reads go through the Lua
ops ``list``/``count`` (one round trip per page and queue, bounded work per call: a filter the indexes do
not narrow walks candidates ``CALL_BUDGET`` at a time) or read P:ev / P:tp directly. Nothing here SCANs.

Counts are exact with only task name, queue and created-time bounds (ZCOUNTs). A worker, error-text or
finished-time filter is checked record by record, so a request examines at most ``SCAN_BUDGET`` records
(``SCAN_SECONDS``): past that a page is partial (``TaskPage.partial``, a cursor that goes on searching) and a
count has the key ``SEARCHED`` (it counted the newest records alone).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis

from qtasks_fast.abc.query import (
    SEARCHED,
    EventPage,
    RawEventPage,
    TaskDetail,
    TaskEvent,
    TaskFilter,
    TaskPage,
    TaskQueries,
    TaskSummary,
    ThroughputPoint,
)
from qtasks_fast.backends.redis.errors import outage, refused
from qtasks_fast.backends.redis.pack import event_json
from qtasks_fast.backends.redis.records import env_decode, record_parts
from qtasks_fast.querylib import (
    FINISHED,
    MAX_LIMIT,
    SCAN_BUDGET,
    STATUSES,
    check_limit,
    decode_cursor,
    encode_cursor,
    error_line,
    error_matches,
    event_number,
    invalid_event_id,
    minute_window,
    throughput_points,
    to_ms,
    unindexed,
)
from qtasks_fast.schemas.envelope import META_RESTART_OF

if TYPE_CHECKING:
    from qtasks_fast.backends.redis.connection import RedisConnection
    from qtasks_fast.backends.redis.script import Script
    from qtasks_fast.schemas import Task

#: candidates one Lua 'list' call examines at most; it also stops after 1 ms of Redis time (LIST_US in
#: redis.lua): a Lua script blocks every other client, so a filter no index narrows must hold Redis briefly
CALL_BUDGET = 500
#: a list or count request's time budget, next to querylib.SCAN_BUDGET (records, all its queues together): past
#: either, the answer is partial (TaskPage.partial) with a cursor that goes on searching
SCAN_SECONDS = 0.1
#: retry chain steps followed each way at most (a chain is as long as its task's retries)
CHAIN_MAX = 100

_events = msgspec.msgpack.Decoder(list[str])
_json = msgspec.json.Encoder().encode


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _created_bounds(f: TaskFilter) -> tuple[str, str]:
    """ZRANGE BYSCORE bounds of ``[created_after, created_before)`` (P:x scores: created_at in ms, rounded as
    the enqueue wrote it)."""
    return ("-inf" if f.created_after is None else str(to_ms(f.created_after)),
            "+inf" if f.created_before is None else f"({to_ms(f.created_before)}")


#: what splits a lowered needle into parts Lua can look for: any non-ASCII character, and the two ASCII letters
#: a non-ASCII one lowers to in Python (U+212A KELVIN SIGN -> 'k', U+0130 'İ' -> 'i̇'), which Lua's byte-wise
#: string.lower never makes
_NOT_FOR_LUA = re.compile(r"[^\x00-\x7f]|[ki]")


def _server_needle(error_contains: str | None) -> str:
    """The part of ``error_contains`` the Lua ``list`` op can look for itself, '' for none.

    Why not the whole needle: Lua lowercases bytes (ASCII only), querylib.error_matches lowercases Unicode
    ("ärger" finds "Ärger"). The longest run of the lowered needle made of ASCII other than 'k'/'i' is in Lua's
    lowered traceback whenever the whole needle is in Python's, so the server drops only rows that cannot
    match (most of them, for a needle with some ASCII); Python applies the exact rule to the rows it returns.
    A needle with no such run (all Cyrillic, say) is matched in Python alone: every candidate is shipped."""
    return max(_NOT_FOR_LUA.split((error_contains or "").lower()), key=len)


#: an event's place in the feed: P:ev entry id (ms, µs), queue, index in the entry
EventPos = tuple[int, int, str, int]


def _event_id(at: EventPos) -> str:
    return f"{at[0]}-{at[1]}.{at[3]}.{at[2]}"


def _parse_event_id(text: str) -> EventPos:
    """The position of an event id from :func:`_event_id` (index -1: an empty page's cursor, before the entry's
    first event); any other text (hand-edited, past 64 bits, digits that are not ASCII) is the invalid-event-id
    error every backend gives."""
    if "\r" in text or "\n" in text:  # no queue name has them; an id is echoed in SSE frames (a line each)
        raise invalid_event_id(text)
    sid, _, rest = text.partition(".")
    k, _, queue = rest.partition(".")
    ms, _, seq = sid.partition("-")
    parts = (event_number(ms), event_number(seq), -1 if k == "-1" else event_number(k))
    if parts[0] is None or parts[1] is None or parts[2] is None:
        raise invalid_event_id(text)
    return (parts[0], parts[1], queue, parts[2])


def _stream_id(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq)


class _Budget:
    """What one request may still examine: a share of candidates per queue, and time (spent by its Lua calls,
    over every page a count walks)."""

    def __init__(self, share: int, seconds: float) -> None:
        self.share, self.deadline = share, time.monotonic() + seconds
        self.spent: dict[str, int] = {}
        self.searched = self.total = 0

    def step(self, queue: str) -> int:
        """Candidates the next Lua call on ``queue`` may examine."""
        return max(1, min(CALL_BUDGET, self.share - self.spent.get(queue, 0)))

    def spend(self, queue: str, n: int, searched: int, total: int) -> bool:
        """Count ``n`` candidates examined (a call that ran out of its step or its time); True when the request
        is out of budget. ``searched``/``total``: the queue's window, as Lua reports them."""
        self.spent[queue] = self.spent.get(queue, 0) + n
        out = self.spent[queue] >= self.share or time.monotonic() >= self.deadline
        if out:
            self.searched += searched
            self.total += total
        return out


class RedisQueries(TaskQueries):
    """Mixed into ``RedisStorage``; reads what ``RedisBroker``'s Lua writes (nothing without a fused broker)."""

    #: per-request search budget (entries, seconds) of a filter no index narrows; tests set it small
    scan_budget: int = SCAN_BUDGET
    scan_seconds: float = SCAN_SECONDS

    conn: RedisConnection
    script: Script
    app_name: str
    result_ttl: float
    priority_levels: int

    if TYPE_CHECKING:
        url: str
        def _reachable(self) -> contextlib.AbstractContextManager[None]: ...
        async def get(self, uuid: str, queues: Sequence[str]) -> Task | None: ...
        async def get_logs(self, uuid: str, queue: str) -> list[str]: ...

    # ------------------------------------------------------------------ lists
    async def list_tasks(self, queues: Sequence[str], filter: TaskFilter, limit: int = 50,
                         cursor: str | None = None) -> TaskPage:
        check_limit(limit)
        if filter.status is not None and filter.status not in STATUSES:
            raise ValueError(f"status {filter.status!r} is not one of {', '.join(STATUSES)}")
        return await self._page(queues, filter, limit, cursor, self._budget(queues, filter))

    def _budget(self, queues: Sequence[str], filter: TaskFilter) -> _Budget:
        """The request's budget: bounded for a filter no index narrows; an indexed one (name, status, queue,
        created time) finds a match in almost every candidate, so its page fills within a few Lua calls."""
        if not unindexed(filter):
            return _Budget(2**62, math.inf)
        return _Budget(max(1, self.scan_budget // max(1, len(self._queues(queues, filter)))), self.scan_seconds)

    async def _page(self, queues: Sequence[str], filter: TaskFilter, limit: int, cursor: str | None,
                    budget: _Budget) -> TaskPage:
        after = decode_cursor(cursor)
        mine = self._queues(queues, filter)
        budget.searched = budget.total = 0
        rows: list[tuple[float, str, TaskSummary]] = []
        stops: list[tuple[float, str]] = []
        for queue in mine:
            got, stop = await self._list_queue(queue, filter, limit + 1, after, budget)
            rows += got
            if stop is not None:
                stops.append(stop)
        rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
        if stops:  # only what every queue has searched down to is complete: down to the highest stop
            frontier = max(stops)
            rows = [r for r in rows if (r[0], r[1]) >= frontier]
            if len(rows) <= limit:
                return TaskPage(tasks=[r[2] for r in rows], cursor=encode_cursor(int(frontier[0]), frontier[1]),
                                partial=True, searched=budget.searched, total=budget.total)
        page = [r[2] for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return TaskPage(tasks=page, cursor=encode_cursor(int(last[0]), last[1]) if last else None)

    @staticmethod
    def _queues(queues: Sequence[str], filter: TaskFilter) -> list[str]:
        return [q for q in queues if filter.queue is None or q == filter.queue]

    async def _list_queue(self, queue: str, f: TaskFilter, want: int, after: tuple[int, str] | None,
                          budget: _Budget) -> tuple[list[tuple[float, str, TaskSummary]], tuple[float, str] | None]:
        """Up to ``want`` matches of one queue strictly after ``after``, newest first, and where the search
        stopped when ``budget`` ran out first (None: it did not). Each Lua call examines at most
        :data:`CALL_BUDGET` candidates or 1 ms, so other clients of Redis wait a millisecond, not seconds."""
        cmin, cmax = _created_bounds(f)
        top, tie = cmax, ""
        if after is not None and (f.created_before is None or after[0] < to_ms(f.created_before)):
            top, tie = str(after[0]), after[1]
        needle = _server_needle(f.error_contains)
        fmin = "" if f.finished_after is None else repr(f.finished_after * 1000)
        fmax = "" if f.finished_before is None else repr(f.finished_before * 1000)
        out: list[tuple[float, str, TaskSummary]] = []
        while len(out) < want:
            step = budget.step(queue)
            with self._reachable():
                rows, more = await self.script.page(queue, self.priority_levels, f.status or "", f.task_name or "",
                                                    cmin, top, tie, cmax, want - len(out), step, f.worker_id or "",
                                                    needle, fmin, fmax)
            for j in range(0, len(rows), 6):
                summary = self._summary(queue, rows[j:j + 6], f.error_contains)
                if summary is not None:
                    out.append((float(rows[j + 1]), summary.uuid, summary))
            if isinstance(more, list):  # this call's budget ran out: go on after the last one examined
                top, tie = _s(more[0]), _s(more[1])
                if budget.spend(queue, int(more[4]), int(more[2]), int(more[3])):
                    return out, (float(top), tie)
            elif more and rows:  # 'limit': as many as asked, some of them dropped by the exact error rule
                top, tie = _s(rows[-5]), _s(rows[-6])
            else:  # '': nothing older matches
                break
        return out, None

    @staticmethod
    def _summary(queue: str, row: list[Any], error_contains: str | None) -> TaskSummary | None:
        """The list row of one Lua row; None when it is not one of ours or its traceback does not contain
        ``error_contains`` (querylib's rule; Lua looked only for part of it, see :func:`_server_needle`)."""
        uuid, score, kind, data, consumer, since = row
        if error_contains and kind != b"R":
            return None  # queued or running: no traceback yet
        try:
            if kind == b"R":
                e, status, updated, _, worker, tb, child, deliveries, started = record_parts(data)
                if not error_matches(error_contains, tb):
                    return None
                env = env_decode(e)
                return TaskSummary(
                    uuid=env.uuid, task_name=env.task_name, queue=queue, status=status, priority=env.priority,
                    created_at=env.created_at, started_at=started / 1000 if started else None,
                    finished_at=int(updated or 0) / 1000 if status in FINISHED else None, worker_id=worker or None,
                    error=error_line(tb) if status == "error" else None, deliveries=deliveries,
                    retry_parent_uuid=env.retry_parent_uuid, retry_child_uuid=child or None,
                    restart_of=env.meta.get(META_RESTART_OF) if env.meta else None)
            env = env_decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # not one of ours (another producer's entry): a list skips it
        running = kind == b"P"
        return TaskSummary(uuid=env.uuid, task_name=env.task_name, queue=queue,
                           status="process" if running else "new", priority=env.priority, created_at=env.created_at,
                           started_at=int(since) / 1000 if running and since else None,
                           worker_id=_s(consumer) if running else None, retry_parent_uuid=env.retry_parent_uuid,
                           restart_of=env.meta.get(META_RESTART_OF) if env.meta else None)

    async def count_tasks(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        if unindexed(filter):
            # not indexed: count the matches of one bounded search (every status at once); when the budget
            # runs out the counts are of the records searched, and SEARCHED says how many those were
            budget, cursor = self._budget(queues, filter), None
            status_free = msgspec.structs.replace(filter, status=None)
            while True:
                page = await self._page(queues, status_free, MAX_LIMIT, cursor, budget)
                for t in page.tasks:
                    counts[t.status] += 1
                if page.partial:
                    return counts | {SEARCHED: page.searched or 0}
                if page.cursor is None:
                    return counts
                cursor = page.cursor
        cmin, cmax = _created_bounds(filter)
        now = int(time.time() * 1000)
        for queue in self._queues(queues, filter):
            with self._reachable():
                got = await self.script.counts(queue, self.priority_levels, filter.task_name or "", cmin, cmax,
                                               now, int(self.result_ttl * 1000))
            for status, n in zip(STATUSES, got, strict=True):
                counts[status] += n
        return counts

    # ----------------------------------------------------------------- detail
    async def task_detail(self, uuid: str, queues: Sequence[str]) -> TaskDetail | None:
        found = await self._find(uuid, queues)
        if found is None:
            return None
        task, queue = found
        started = finished = None
        with self._reachable():
            blob: Any = await self.conn.aio.get(self.script.record_key(queue, uuid))
            restarts: Any = await self.conn.aio.smembers(self.script.restarts_key(queue, uuid))
        if blob is not None:
            _, status, updated, *_, started_ms = record_parts(blob)
            started = started_ms / 1000 if started_ms else None
            finished = int(updated or 0) / 1000 if status in FINISHED else None
        return TaskDetail(task=task, started_at=started, finished_at=finished,
                          retry_chain=await self._chain(task, queue),
                          restarts=await self._restarts(sorted(_s(u) for u in restarts), queue),
                          logs=await self.get_logs(uuid, queue))

    async def _find(self, uuid: str, queues: Sequence[str]) -> tuple[Task, str] | None:
        for queue in queues:
            task = await self.get(uuid, [queue])
            if task is not None:
                return task, queue
        return None

    async def _chain(self, task: Task, queue: str) -> list[str]:
        """Every attempt of ``task``'s call, first first: parents back, children forward (those still kept)."""
        back: list[str] = []
        t: Task | None = task
        while t is not None and t.retry_parent_uuid is not None and len(back) < CHAIN_MAX:
            back.append(str(t.retry_parent_uuid))
            t = await self.get(str(t.retry_parent_uuid), [queue])
        chain = [*reversed(back), str(task.uuid)]
        t = task
        while t is not None and t.retry_child_uuid is not None and len(chain) < 2 * CHAIN_MAX:
            chain.append(str(t.retry_child_uuid))
            t = await self.get(str(t.retry_child_uuid), [queue])
        return chain

    async def _restarts(self, uuids: list[str], queue: str) -> list[str]:
        """``uuids`` (from P:rs) oldest first, those still kept."""
        dated = []
        for u in uuids:
            t = await self.get(u, [queue])
            if t is not None:
                dated.append((t.created_at, u))
        return [u for _, u in sorted(dated)]

    # ----------------------------------------------------------------- events
    # Event ids are global: "<P:ev entry id>.<index in the entry>.<queue>", ordered by (entry id, queue,
    # index) across every queue; entry ids are the server's time in µs when written (redis.lua, xadd_event).
    # A read returns only entries older than the server's TIME taken as it begins: whatever was written
    # before the call is in, and an entry written later, in any queue, has a larger id than everything
    # returned, so resuming from any id is exact for any set of queues.
    async def events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                     block: float = 0.0) -> EventPage:
        check_limit(limit)
        pos = await self._start(after)
        deadline = time.monotonic() + block
        while True:
            events = await self._read_events(queues, pos, limit)
            if events:
                return EventPage(events=events, cursor=events[-1].id)
            left = deadline - time.monotonic()
            if left <= 0:
                # none came: a concrete resume point for '$' / None (an id passed stays as it was)
                return EventPage(events=[], cursor=after if after not in (None, "$") else _event_id(pos))
            await self._wait_events(queues, pos, left)

    async def _server_time(self) -> tuple[int, int]:
        """The server's clock as a P:ev entry id: (ms, µs within the ms)."""
        with self._reachable():
            sec, usec = await self.conn.aio.time()
        return int(sec) * 1000 + int(usec) // 1000, int(usec) % 1000

    async def _start(self, after: str | None) -> EventPos:
        if after is None:
            return (0, 0, "", -1)
        if after != "$":
            return _parse_event_id(after)
        ms, us = await self._server_time()  # '$': after everything written so far
        return (ms, us, "", -1)

    async def _read_events(self, queues: Sequence[str], pos: EventPos, limit: int) -> list[TaskEvent]:
        """Up to ``limit`` events after ``pos`` over ``queues``, oldest first, of milliseconds already past."""
        before = await self._server_time()
        found: list[tuple[EventPos, list[str]]] = []
        for q in sorted(set(queues)):
            start = f"{pos[0]}-{pos[1]}"
            got = 0
            while got < limit:
                # entries hold a batch each (two events or more while a fleet drains): about what the page still
                # needs in one call, not one call per 100 entries (each a round trip and a reply to parse)
                count = min(1000, max(10, (limit - got) // 2 + 1))
                with self._reachable():
                    entries: Any = await self.conn.aio.xrange(self.script.events_key(q), min=start,
                                                              count=count)
                for eid, fields in entries:
                    ms, seq = _stream_id(_s(eid))
                    if (ms, seq) >= before:
                        got = limit  # written since this read began: comes next time
                        break
                    items = _events.decode(fields[b"b"])
                    for j in range(len(items) // 4):
                        at = (ms, seq, q, j)
                        if at > pos:
                            found.append((at, items[4 * j:4 * j + 4]))
                            got += 1
                    if got >= limit:
                        break
                if len(entries) < count:
                    break
                start = "(" + _s(entries[-1][0])
        found.sort(key=lambda f: f[0])
        return [TaskEvent(id=_event_id(at), uuid=uuid, task_name=name, queue=at[2], status=status,
                          at=at[0] / 1000, worker_id=worker or None)
                for at, (uuid, status, name, worker) in found[:limit]]

    async def raw_events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                         block: float = 0.0) -> RawEventPage:
        """:meth:`events` as ids and JSON, made from the stream entries' msgpack without an object per event
        (``pack.event_json``) and read without redis-py's reply parsing (a dict per entry): what a web server's
        one reader of a draining fleet's feed does 100,000 times a second."""
        check_limit(limit)
        pos = await self._start(after)
        deadline = time.monotonic() + block
        while True:
            ids: list[str] = []
            data: list[bytes] = []
            await self._read_raw(queues, pos, limit, ids, data)
            if ids:
                return RawEventPage(ids=ids, data=data, cursor=ids[-1])
            left = deadline - time.monotonic()
            if left <= 0:
                return RawEventPage(ids=[], data=[],
                                    cursor=after if after not in (None, "$") else _event_id(pos))
            await self._wait_events(queues, pos, left)

    async def _read_raw(self, queues: Sequence[str], pos: EventPos, limit: int, ids: list[str],
                        data: list[bytes]) -> None:
        """:meth:`_read_events` into ``ids`` and ``data``: the same entries, the same bounds and order."""
        direct = self.conn._direct(self.conn.aio)
        before: tuple[int, int] | None = None
        found: list[tuple[int, int, str, int, Any]] = []  # per entry: (ms, seq, queue, first index, fields)
        try:  # direct connections: redis-py's errors, or the socket's own (OSError) on a write
            for q in sorted(set(queues)):
                start = f"{pos[0]}-{pos[1]}"
                got = 0
                while got < limit:
                    count = min(1000, max(10, (limit - got) // 2 + 1))
                    cmd = ["XRANGE", self.script.events_key(q), start, "+", "COUNT", count]
                    if before is None:  # the server's time before the first read, in the same round trip
                        now, entries = await direct.pipeline([["TIME"], cmd])
                        before = int(now[0]) * 1000 + int(now[1]) // 1000, int(now[1]) % 1000
                    else:
                        entries = await direct.execute(cmd)
                    for eid, fields in entries:
                        ms, seq = _stream_id(_s(eid))
                        if (ms, seq) >= before:
                            got = limit  # written since this read began: comes next time
                            break
                        first = 0
                        if (ms, seq) == (pos[0], pos[1]):  # the entry ``pos`` is in: only what follows it
                            first = 0 if q > pos[2] else pos[3] + 1 if q == pos[2] else 1 << 30
                        n = int(fields[fields.index(b"c") + 1]) - first
                        if n > 0:
                            found.append((ms, seq, q, first, fields))
                            got += n
                        if got >= limit:
                            break
                    if len(entries) < count:
                        break
                    start = "(" + _s(entries[-1][0])
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        except OSError as exc:
            raise refused(self.url, exc) from exc
        if len(queues) > 1:
            found.sort(key=lambda f: f[:3])
        qjson = {q: _json(q) for q in queues}
        left = limit
        for ms, seq, q, first, fields in found:
            left -= event_json(fields[fields.index(b"b") + 1], ms, seq, q, qjson[q], first, left, ids, data)
            if left <= 0:
                break

    async def _wait_events(self, queues: Sequence[str], pos: EventPos, left: float) -> None:
        """Block until some P:ev of ``queues`` gets an entry after ``pos`` (or ``left`` seconds pass)."""
        step = min(left, self.conn.wait_slice or left)
        streams = {self.script.events_key(q): f"{pos[0]}-{pos[1]}" for q in queues}
        with self._reachable():
            await self.conn.aio.xread(streams, count=1, block=max(1, int(step * 1000)))  # type: ignore[arg-type]

    # ------------------------------------------------------------- throughput
    async def throughput(self, queues: Sequence[str], minutes: int = 15) -> list[ThroughputPoint]:
        window = minute_window(minutes)
        keys = [(m, s) for m in window for s in ("success", "error", "cancel")]
        counts = dict.fromkeys(keys, 0)
        for q in queues:
            with self._reachable():
                got: Any = await self.conn.aio.hmget(self.script.throughput_key(q), [f"{m} {s}" for m, s in keys])
            for key, v in zip(keys, got, strict=True):
                counts[key] += int(v or 0)
        return throughput_points(window, counts)
