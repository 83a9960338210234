"""One app's read side: the functions every surface reads through (``qtasks-fast tasks``/``events``, and the
WebView, REST API and gRPC gateway that build on them), so no two surfaces can disagree.

Each joins what the storage knows (:class:`~qtasks_fast.abc.query.TaskQueries`: records, logs, events,
counters) with what the broker knows (:class:`~qtasks_fast.abc.capabilities.QueueStatistics` and
:class:`~qtasks_fast.abc.capabilities.WorkerRegistry`: queues and the fleet), over every queue of the app
(``app.all_queues()``: its own tasks' queues and those published by its workers) unless a filter names one.
A backend without the capability raises ``NotSupported`` naming backend and capability.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.capabilities import QueueStatistics, WorkerInfo, WorkerRegistry, require
from qtasks_fast.abc.query import (
    EventPage,
    QueueDepth,
    RawEventPage,
    TaskDetail,
    TaskFilter,
    TaskPage,
    TaskQueries,
    ThroughputPoint,
)

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: the largest page a caller may ask for (TaskQueries.list_tasks takes 1..1000)
MAX_PAGE = 1000


class QueueOverview(msgspec.Struct, kw_only=True):
    """A queue as a dashboard shows it: what it holds now, and what it finished."""

    depth: QueueDepth
    #: tasks of the queue per status, records still kept (see ``result_ttl``)
    counts: dict[str, int]


def _queries(app: BaseQueueTasks) -> TaskQueries:
    return require(app.storage, TaskQueries)


async def _queues(app: BaseQueueTasks, queue: str | None) -> list[str]:
    return [queue] if queue else await app.all_queues()


async def list_tasks(app: BaseQueueTasks, filter: TaskFilter | None = None, limit: int = 50,
                     cursor: str | None = None) -> TaskPage:
    """A page of the app's tasks matching ``filter``, newest first; pass ``page.cursor`` for the next one."""
    filter = filter or TaskFilter()
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit={limit} is out of range: ask for 1 to {MAX_PAGE} tasks per page")
    return await _queries(app).list_tasks(await _queues(app, filter.queue), filter, limit, cursor)


async def count_tasks(app: BaseQueueTasks, filter: TaskFilter | None = None) -> dict[str, int]:
    """How many of the app's tasks match ``filter`` (its status ignored), per status."""
    filter = filter or TaskFilter()
    return await _queries(app).count_tasks(await _queues(app, filter.queue), filter)


async def task_detail(app: BaseQueueTasks, uuid: str) -> TaskDetail | None:
    """Everything known of task ``uuid`` (timings, retry chain, restarts, logs), or None."""
    return await _queries(app).task_detail(uuid, await app.all_queues())


async def events(app: BaseQueueTasks, after: str | None = "$", limit: int = 100, block: float = 0.0,
                 queue: str | None = None) -> EventPage:
    """Status changes after ``after`` (an event id; ``"$"`` = from now on, None = the oldest kept)."""
    return await _queries(app).events(await _queues(app, queue), after, limit, block)


async def raw_events(app: BaseQueueTasks, after: str | None = "$", limit: int = 100, block: float = 0.0,
                     queue: str | None = None) -> RawEventPage:
    """:func:`events` as ids and JSON (``TaskQueries.raw_events``): for surfaces that forward them (SSE)."""
    return await _queries(app).raw_events(await _queues(app, queue), after, limit, block)


async def throughput(app: BaseQueueTasks, minutes: int = 15, queue: str | None = None) -> list[ThroughputPoint]:
    """Tasks finished per minute over the last ``minutes``, per status, oldest minute first."""
    return await _queries(app).throughput(await _queues(app, queue), minutes)


async def queues(app: BaseQueueTasks) -> list[QueueOverview]:
    """Each queue of the app: depth per priority, in flight per worker, delayed, dead, counts per status."""
    counting = require(app.broker, QueueStatistics)
    out = []
    for q in await app.all_queues():
        depth = await counting.queue_depth(q)
        counts = await _queries(app).count_tasks([q], TaskFilter(queue=q))
        out.append(QueueOverview(depth=depth, counts=counts))
    return out


async def workers(app: BaseQueueTasks, include_lost: bool = True) -> list[WorkerInfo]:
    """The app's workers (live ones, and with ``include_lost`` those whose heartbeat stopped), by id."""
    listed = await require(app.broker, WorkerRegistry).workers(include_lost=include_lost)
    return sorted(listed, key=lambda w: (w.lost, w.id, w.host, w.pid))
