"""The query side of the in-process backend (:class:`~qtasks_fast.abc.query.TaskQueries`), for tests and demos.

Simple structures, the same semantics as SQLite and Redis: lists filter and sort the records of the shared
:class:`~qtasks_fast.backends.memory.state.InMemoryState` on each call (it holds what one test makes, not a
million records); the event feed keeps the last :data:`~qtasks_fast.querylib.EVENTS_KEPT` status changes
per queue, and a blocked reader sleeps on an event that the next change sets (no polling).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from qtasks_fast.abc.query import (
    EventPage,
    TaskDetail,
    TaskEvent,
    TaskFilter,
    TaskPage,
    TaskQueries,
    TaskSummary,
    ThroughputPoint,
)
from qtasks_fast.backends.memory.state import InMemoryState, Waiter, _Record
from qtasks_fast.querylib import (
    FINISHED,
    STATUSES,
    check_limit,
    decode_cursor,
    encode_cursor,
    error_line,
    event_number,
    invalid_event_id,
    matches,
    minute_window,
    throughput_points,
    to_ms,
)


class MemoryQueries(TaskQueries):
    """:class:`TaskQueries` over ``self.state`` (mixed into ``InMemoryStorage``)."""

    state: InMemoryState

    def _live(self, queues: Sequence[str]) -> list[tuple[str, _Record]]:
        """``(uuid, record)`` of ``queues`` not expired (call with the lock held)."""
        now, wanted = time.monotonic(), set(queues)
        return [(u, r) for u, r in self.state.records.items()
                if r.queue in wanted and (r.expires_at is None or r.expires_at > now)]

    @staticmethod
    def _match(f: TaskFilter, uuid: str, r: _Record, ignore_status: bool = False) -> bool:
        return matches(f, name=r.name, status=r.status, queue=r.queue, worker=r.worker_id, traceback=r.traceback,
                       created=r.created, finished=r.finished, ignore_status=ignore_status)

    @staticmethod
    def _summary(uuid: str, r: _Record) -> TaskSummary:
        task = r.task()
        return TaskSummary(uuid=uuid, task_name=r.name, queue=r.queue, status=r.status, priority=task.priority,
                           created_at=r.created, started_at=r.started, finished_at=r.finished,
                           worker_id=r.worker_id, error=error_line(r.traceback) if r.status == "error" else None,
                           deliveries=r.deliveries, retry_parent_uuid=_s(task.retry_parent_uuid),
                           retry_child_uuid=r.retry_child, restart_of=r.restart_of)

    async def list_tasks(self, queues: Sequence[str], filter: TaskFilter, limit: int = 50,
                         cursor: str | None = None) -> TaskPage:
        check_limit(limit)
        after = decode_cursor(cursor)
        with self.state.lock:
            rows = [(to_ms(r.created), u, r) for u, r in self._live(queues) if self._match(filter, u, r)]
            if after is not None:
                rows = [row for row in rows if (row[0], row[1]) < after]
            rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
            page = [self._summary(u, r) for _, u, r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return TaskPage(tasks=page, cursor=encode_cursor(last[0], last[1]) if last is not None else None)

    async def count_tasks(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        with self.state.lock:
            for u, r in self._live(queues):
                if self._match(filter, u, r, ignore_status=True):
                    counts[r.status] = counts.get(r.status, 0) + 1
        return counts

    async def task_detail(self, uuid: str, queues: Sequence[str]) -> TaskDetail | None:
        st = self.state
        with st.lock:
            rec = st.record(uuid, queues)
            if rec is None:
                return None
            task = rec.task()
            back: list[str] = []
            parent = _s(task.retry_parent_uuid)
            while parent is not None and parent not in back and (p := st.records.get(parent)) is not None:
                back.append(parent)
                parent = _s(p.task().retry_parent_uuid)
            chain = [*reversed(back), uuid]
            child = rec.retry_child
            while child is not None and child not in chain and (c := st.records.get(child)) is not None:
                chain.append(child)
                child = c.retry_child
            restarts = sorted((r.created, u) for u, r in st.records.items() if r.restart_of == uuid)
            logs = st.get_logs(rec.queue, uuid)
            return TaskDetail(task=task, started_at=rec.started, finished_at=rec.finished, retry_chain=chain,
                              restarts=[u for _, u in restarts], logs=logs)

    async def events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                     block: float = 0.0) -> EventPage:
        check_limit(limit)
        st = self.state
        with st.lock:
            start = st.last_event if after == "$" else _event_id(after)
        deadline = time.monotonic() + block
        loop = asyncio.get_running_loop()
        while True:
            waiter: Waiter = (loop, asyncio.Event())
            with st.lock:
                found = sorted(ev for q in queues for ev in st.events.get(q, ()) if ev[0] > start)[:limit]
                left = deadline - time.monotonic()
                if not found and left > 0:
                    st.event_waiters.add(waiter)  # under the lock: no change slips past
            if found or left <= 0:
                events = [TaskEvent(id=str(i), uuid=u, task_name=n, queue=q, status=s, at=at, worker_id=w)
                          for i, u, n, q, s, at, w in found]
                return EventPage(events=events, cursor=events[-1].id if events else str(start))
            try:
                await asyncio.wait_for(waiter[1].wait(), left)
            except asyncio.TimeoutError:
                pass
            finally:
                with st.lock:
                    st.event_waiters.discard(waiter)

    async def throughput(self, queues: Sequence[str], minutes: int = 15) -> list[ThroughputPoint]:
        window = minute_window(minutes)
        counts: dict[tuple[int, str], int] = {}
        with self.state.lock:
            for _, r in self._live(queues):
                if r.finished is not None and r.status in FINISHED and r.finished >= window[0]:
                    key = (int(r.finished // 60 * 60), r.status)
                    counts[key] = counts.get(key, 0) + 1
        return throughput_points(window, counts)


def _s(value: object) -> str | None:
    return None if value is None else str(value)


def _event_id(after: str | None) -> int:
    """The integer position of an event id (``None``: before the first)."""
    if after is None:
        return 0
    at = event_number(after)
    if at is None:
        raise invalid_event_id(after)
    return at
