"""The query side: what the WebView, the REST API, gRPC and ``qtasks-fast inspect`` read.

Reads never change a task. They are split by who holds the data:

* the **storage** holds records, logs, counters and the event feed: :class:`TaskQueries`
  (list/count/detail/events/throughput);
* the **broker** holds the queues and the fleet: :meth:`Broker.queue_stats` (with
  :class:`QueueDepth` per priority and in flight per worker) and the worker registry
  (:class:`~qtasks_fast.abc.broker.WorkerInfo`).

``qtasks_fast.query`` joins the two for one app, so every surface reads through one function each.

Cost rule (issue 12): the hot path pays at most one command per settled batch for all of this; a filtered
page is answered from indexes, never by scanning every record. Times are wall-clock seconds since the epoch.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence

import msgspec

from qtasks_fast.schemas.task import Task

_json = msgspec.json.Encoder().encode

#: the extra key of a :meth:`TaskQueries.count_tasks` answer that stopped before it examined every candidate
SEARCHED = "searched"


class TaskFilter(msgspec.Struct, kw_only=True, frozen=True):
    """What a task list is narrowed to; every field None means "any". Fields combine with AND."""

    task_name: str | None = None
    #: one of ``new``, ``process``, ``success``, ``error``, ``cancel``
    status: str | None = None
    queue: str | None = None
    #: the worker that ran (or runs) it: a consumer name ``<worker-id>-<slot>`` or a bare ``--worker-id``
    #: (matches every slot of it)
    worker_id: str | None = None
    #: case-insensitive substring of the traceback (finished ``error`` tasks)
    error_contains: str | None = None
    #: ``[after, before)`` bounds on the creation time (enqueue) ...
    created_after: float | None = None
    created_before: float | None = None
    #: ... and on the finish time (tasks not finished never match a finished bound)
    finished_after: float | None = None
    finished_before: float | None = None

    def __post_init__(self) -> None:
        """A bound that is not a finite time is refused here, once for every backend: NaN compares false with
        everything and infinity has no millisecond, so backends would answer it differently (or crash)."""
        for name in ("created_after", "created_before", "finished_after", "finished_before"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"TaskFilter.{name} must be a time in seconds since the epoch, got {value!r}; "
                                 "leave it None for no bound")


class TaskSummary(msgspec.Struct, kw_only=True):
    """One row of a task list: enough to draw it without loading arguments or results."""

    uuid: str
    task_name: str
    queue: str
    status: str
    priority: int
    created_at: float
    #: None while queued, or when the backend could not tell
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    #: last line of the traceback of an ``error`` task (``"ValueError: bad"``), at most 500 characters (cut
    #: ending in ``…``; :class:`TaskDetail` has the whole traceback)
    error: str | None = None
    deliveries: int = 1
    retry_parent_uuid: str | None = None
    retry_child_uuid: str | None = None
    restart_of: str | None = None


class TaskPage(msgspec.Struct, kw_only=True):
    """A page of a list, newest (by ``created_at``, then uuid) first."""

    tasks: list[TaskSummary]
    #: pass back as ``cursor`` for the next (older) page; None on the last page. Opaque to callers, stable
    #: under concurrent inserts (a new task never shifts a later page)
    cursor: str | None = None
    #: True when the backend stopped searching before the page filled: a filter no index narrows (worker,
    #: error text, finished time) is checked record by record, and a request examines only so many (so one
    #: dashboard search cannot hold the broker for seconds). ``tasks`` are the matches found so far (maybe
    #: none); ``cursor`` goes on searching older records. Dashboards say "searched the newest ``searched`` of
    #: ``total``; more may match"
    partial: bool = False
    #: with ``partial``: records of the filter's window searched so far (this page and the ones before it) ...
    searched: int | None = None
    #: ... of the window's records in all (what an indexed filter narrows the search to); None when the backend
    #: cannot tell without counting them all (SQLite)
    total: int | None = None


class TaskDetail(msgspec.Struct, kw_only=True):
    """Everything known of one task, for its detail page."""

    task: Task
    started_at: float | None = None
    finished_at: float | None = None
    #: uuids of every attempt of this call, first attempt first (this one included): follows
    #: ``retry_parent_uuid`` back and ``retry_child_uuid`` forward
    retry_chain: list[str] = []
    #: uuids of the tasks that restart this one (``app.restart``), oldest first
    restarts: list[str] = []
    #: the lines captured while it ran (LogCapture), in order
    logs: list[str] = []


class TaskEvent(msgspec.Struct, kw_only=True, frozen=True):
    """A status change: the task ``uuid`` became ``status`` at ``at``."""

    #: resume point: :meth:`TaskQueries.events` with ``after=id`` returns what came after this event
    id: str
    uuid: str
    task_name: str
    queue: str
    status: str
    at: float
    worker_id: str | None = None


class EventPage(msgspec.Struct, kw_only=True):
    events: list[TaskEvent]
    #: resume point after the last event returned (== its id); when none came, a resume point equal to
    #: ``after`` with ``"$"`` resolved to the feed's end at the call (so nothing after the call is skipped)
    cursor: str


class RawEventPage(msgspec.Struct, kw_only=True):
    """An :class:`EventPage` in its wire form: for a surface that only forwards events (SSE) or matches them on a
    few fields, not one :class:`TaskEvent` object per event (at 100,000 events a second those objects are most of
    a core). ``ids[i]`` is event ``i``'s id and ``data[i]`` its JSON, byte for byte
    ``msgspec.json.encode(TaskEvent)`` of the same event (field order: id, uuid, task_name, queue, status, at,
    worker_id)."""

    ids: list[str]
    data: list[bytes]
    #: as :attr:`EventPage.cursor`
    cursor: str


class ThroughputPoint(msgspec.Struct, kw_only=True, frozen=True):
    """Tasks finished in the minute starting at ``minute`` (epoch seconds, a multiple of 60), per status."""

    minute: int
    success: int = 0
    error: int = 0
    cancel: int = 0


class QueueDepth(msgspec.Struct, kw_only=True):
    """A queue's messages right now, broken down (see :meth:`Broker.queue_stats` for the totals)."""

    queue: str
    #: ready messages per priority level (levels with none omitted)
    waiting_by_priority: dict[int, int]
    #: messages handed out and not settled, per consumer name
    in_flight_by_worker: dict[str, int]
    delayed: int
    dead: int


class TaskQueries(abc.ABC):
    """the query side: list, count and follow task records of ``queues`` (a storage capability; the first
    words, up to the colon, are what ``NotSupported`` calls it).

    Statuses come from the storage's records: a task is ``new`` from enqueue, ``process`` once handed to a
    worker (a fused broker may know this without a record write), and final after its settle.
    """

    @abc.abstractmethod
    async def list_tasks(self, queues: Sequence[str], filter: TaskFilter, limit: int = 50,
                         cursor: str | None = None) -> TaskPage:
        """Tasks of ``queues`` matching ``filter``, newest first, at most ``limit`` (1..1000)."""

    @abc.abstractmethod
    async def count_tasks(self, queues: Sequence[str], filter: TaskFilter) -> dict[str, int]:
        """How many tasks match ``filter`` per status (``filter.status`` ignored): every status as a key.

        Exact for indexed filters; backends document any filter they count approximately. A count that
        stopped early (a filter no index narrows, over more records than one request examines) also has
        the key :data:`SEARCHED` (how many records it examined): the counts are of those alone."""

    @abc.abstractmethod
    async def task_detail(self, uuid: str, queues: Sequence[str]) -> TaskDetail | None:
        """The full record with timings, retry chain, restarts and logs; None when unknown or expired."""

    @abc.abstractmethod
    async def events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                     block: float = 0.0) -> EventPage:
        """Status changes after ``after`` (an event id or cursor), oldest first, at most ``limit``.

        ``after=None`` starts at the oldest event still kept; ``after="$"`` at the newest (only what comes
        next). Waits up to ``block`` seconds for the first event when none is there yet. Events are kept
        at least ``result_ttl`` or a bounded count, whichever the backend documents; a reader that resumes
        from an id older than what is kept gets the oldest kept events (it never silently skips newer ones).
        """

    async def raw_events(self, queues: Sequence[str], after: str | None, limit: int = 100,
                         block: float = 0.0) -> RawEventPage:
        """:meth:`events` as ids and JSON (:class:`RawEventPage`): the same events, ids and cursor.

        Not abstract: this default encodes what :meth:`events` returns, so every backend has it; a backend whose
        stored form can be turned into the JSON directly overrides it (Redis: the stream entries' msgpack)."""
        page = await self.events(queues, after, limit, block)
        return RawEventPage(ids=[e.id for e in page.events], data=[_json(e) for e in page.events],
                            cursor=page.cursor)

    @abc.abstractmethod
    async def throughput(self, queues: Sequence[str], minutes: int = 15) -> list[ThroughputPoint]:
        """Finished tasks per minute over the last ``minutes`` minutes, oldest first, empty minutes included."""


__all__ = ["SEARCHED", "EventPage", "QueueDepth", "RawEventPage", "TaskDetail", "TaskEvent", "TaskFilter", "TaskPage",
           "TaskQueries", "TaskSummary", "ThroughputPoint"]
