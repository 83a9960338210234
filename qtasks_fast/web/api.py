"""The REST API under ``/api/v1``: one declared endpoint per route (:mod:`qtasks_fast.web.endpoints`), each a
thin call of :mod:`qtasks_fast.service`. Times are seconds since the epoch; lists are newest first."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from qtasks_fast import service
from qtasks_fast.abc.capabilities import AuditEntry, WorkerInfo
from qtasks_fast.abc.query import TaskDetail, TaskFilter, TaskPage, ThroughputPoint
from qtasks_fast.query import QueueOverview
from qtasks_fast.querylib import STATUSES
from qtasks_fast.schemas import Task
from qtasks_fast.web.endpoints import Call, endpoint

Status = Literal["new", "process", "success", "error", "cancel"]
Page = Annotated[int, Meta(ge=1, le=1000)]
#: a time in seconds since the epoch (up to the year 5000: a millisecond of it fits every backend's integer)
Time = Annotated[float, Meta(ge=0, le=95_000_000_000)]
#: a cursor a page returned: ``<created ms>:<uuid>``
Cursor = Annotated[str, Meta(pattern=r"^-?[0-9]{1,18}:")]
Wait = Annotated[float, Meta(ge=0, le=60)]
Uuid = Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")]


class FilterQuery(msgspec.Struct, kw_only=True):
    """The task filter as query parameters (the Tasks page uses the same names in its URL)."""

    task_name: str | None = None
    status: Status | None = None
    queue: str | None = None
    worker_id: str | None = None
    error_contains: str | None = None
    created_after: Time | None = None
    created_before: Time | None = None
    finished_after: Time | None = None
    finished_before: Time | None = None

    def filter(self) -> TaskFilter:
        return service.checked_filter({f: getattr(self, f) for f in TaskFilter.__struct_fields__})


class TaskQuery(FilterQuery, kw_only=True):
    limit: Page = 50
    cursor: Cursor | None = None


class WaitQuery(msgspec.Struct, kw_only=True):
    #: seconds to wait for the task to finish (0..60); the record as it is then
    wait: Wait | None = None


class Submit(msgspec.Struct, kw_only=True):
    """A call of a registered task by name."""

    name: str
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    priority: int | None = None
    #: run no sooner than this many seconds from now (up to a year) ...
    countdown: Annotated[float, Meta(ge=0, le=366 * 86400)] | None = None
    #: ... or than this time (seconds since the epoch); give one of the two
    eta: Time | None = None
    #: a unique key: a call while another with the key is unfinished returns that one
    unique: str | None = None
    #: seconds to wait for the result (0..60)
    wait: Wait | None = None


class CancelBody(msgspec.Struct, kw_only=True):
    reason: str = ""


class CancelResult(msgspec.Struct, kw_only=True):
    uuid: str
    result: Literal["queued", "running", "finished"]


class BulkCount(msgspec.Struct, kw_only=True):
    """How many tasks a bulk action over a filter would touch (at most ``cap``), for its confirmation."""

    action: Literal["cancel", "restart", "requeue"]
    filter: FilterQuery = msgspec.field(default_factory=FilterQuery)
    cap: Annotated[int, Meta(ge=1, le=10_000)] = 1000


class Bulk(BulkCount, kw_only=True):
    """A bulk action over a filter, on the tasks ``POST /tasks/bulk/count`` counted: ``confirm`` is its count,
    ``uuids`` its snapshot (those of them the filter still matches are touched; nothing else)."""

    confirm: Annotated[int, Meta(ge=0)]
    uuids: Annotated[list[Uuid], Meta(max_length=10_000)]


class DeadQuery(msgspec.Struct, kw_only=True):
    queue: str | None = None
    limit: Page = 100


class DeadSelection(msgspec.Struct, kw_only=True):
    """Dead letters by id (of ``GET /dead-letters``), or every one of ``queue`` (all queues) when ``ids`` is
    null: ``ids`` must be given, so an empty body never means "all"."""

    ids: list[str] | None
    queue: str | None = None


class Count(msgspec.Struct, kw_only=True):
    count: int


class WorkersQuery(msgspec.Struct, kw_only=True):
    include_lost: bool = True


class LimitQuery(msgspec.Struct, kw_only=True):
    limit: Page = 100


class ThroughputQuery(msgspec.Struct, kw_only=True):
    minutes: Annotated[int, Meta(ge=1, le=7 * 24 * 60)] = 15
    queue: str | None = None


NOT_FOUND, READ_ONLY = 404, 403
assert set(STATUSES) == set(Status.__args__)  # type: ignore[attr-defined]


@endpoint("GET", "/tasks", summary="List tasks matching a filter, newest first", query=TaskQuery, answer=TaskPage,
          errors=(NOT_FOUND,))
async def list_tasks(call: Call[TaskQuery, None]) -> TaskPage:
    return await service.list_tasks(call.app, call.query.filter(), call.query.limit, call.query.cursor)


@endpoint("POST", "/tasks", summary="Submit a registered task by name", body=Submit, answer=Task,
          errors=(NOT_FOUND, READ_ONLY))
async def submit(call: Call[Any, Submit]) -> Task:
    b = call.body
    return await service.submit(call.app, call.caller, b.name, b.args, b.kwargs, priority=b.priority,
                                countdown=b.countdown, eta=b.eta, unique=b.unique, wait=b.wait)


@endpoint("GET", "/tasks/counts", summary="How many tasks match a filter, per status; with a `searched` key when a "
          "worker, error or finished-time filter stopped early (the counts are of the newest `searched` tasks)",
          query=FilterQuery, answer=dict[str, int], errors=(NOT_FOUND,))
async def counts(call: Call[FilterQuery, None]) -> dict[str, int]:
    return await service.count_tasks(call.app, call.query.filter())


@endpoint("POST", "/tasks/bulk/count", summary="How many tasks a bulk action would touch (for its confirmation)",
          body=BulkCount, answer=service.BulkResult, errors=(NOT_FOUND,))
async def bulk_count(call: Call[Any, BulkCount]) -> service.BulkResult:
    b = call.body
    return await service.bulk(call.app, call.caller, b.action, b.filter.filter(), cap=b.cap, dry_run=True)


@endpoint("POST", "/tasks/bulk", summary="Cancel, restart or requeue the `uuids` a count gave that still match",
          body=Bulk, answer=service.BulkResult, errors=(NOT_FOUND, READ_ONLY))
async def bulk(call: Call[Any, Bulk]) -> service.BulkResult:
    b = call.body
    return await service.bulk(call.app, call.caller, b.action, b.filter.filter(), cap=b.cap, confirm=b.confirm,
                              uuids=b.uuids)


@endpoint("GET", "/tasks/{uuid}", summary="A task's record; wait=N waits up to N s for it to finish",
          query=WaitQuery, answer=Task, errors=(NOT_FOUND,))
async def get(call: Call[WaitQuery, None]) -> Task:
    return await service.get(call.app, call.path["uuid"], call.query.wait)


@endpoint("GET", "/tasks/{uuid}/detail", summary="Everything known of a task: timings, retry chain, restarts, logs",
          answer=TaskDetail, errors=(NOT_FOUND,))
async def detail(call: Call[Any, None]) -> TaskDetail:
    return await service.detail(call.app, call.path["uuid"])


@endpoint("GET", "/tasks/{uuid}/logs", summary="The log lines captured while a task ran", answer=list[str],
          errors=(NOT_FOUND,))
async def logs(call: Call[Any, None]) -> list[str]:
    return await service.logs(call.app, call.path["uuid"])


@endpoint("POST", "/tasks/{uuid}/cancel", summary="Cancel a queued or running task", body=CancelBody,
          answer=CancelResult, errors=(NOT_FOUND, READ_ONLY))
async def cancel(call: Call[Any, CancelBody]) -> CancelResult:
    result = await service.cancel(call.app, call.caller, call.path["uuid"], call.body.reason)
    return CancelResult(uuid=call.path["uuid"], result=result)  # type: ignore[arg-type]


@endpoint("POST", "/tasks/{uuid}/restart", summary="Run a task's call again under a new uuid", answer=Task,
          errors=(NOT_FOUND, READ_ONLY))
async def restart(call: Call[Any, None]) -> Task:
    return await service.restart(call.app, call.caller, call.path["uuid"])


@endpoint("GET", "/queues", summary="Each queue: depth per priority, in flight, delayed, dead, counts",
          answer=list[QueueOverview])
async def queues(call: Call[Any, None]) -> list[QueueOverview]:
    return await service.queues(call.app)


@endpoint("POST", "/queues/{queue}/purge", summary="Drop every waiting message of a queue", answer=Count,
          errors=(NOT_FOUND, READ_ONLY))
async def purge(call: Call[Any, None]) -> Count:
    return Count(count=await service.purge(call.app, call.caller, call.path["queue"]))


@endpoint("GET", "/dead-letters", summary="Dead letters, newest first", query=DeadQuery,
          answer=list[service.DeadLetterView], errors=(NOT_FOUND,))
async def dead_letters(call: Call[DeadQuery, None]) -> list[service.DeadLetterView]:
    return await service.dead_letters(call.app, call.query.queue, call.query.limit)


@endpoint("POST", "/dead-letters/requeue", summary="Put dead letters back on their queue", body=DeadSelection,
          answer=Count, errors=(NOT_FOUND, READ_ONLY))
async def requeue_dead(call: Call[Any, DeadSelection]) -> Count:
    b = call.body
    return Count(count=await service.dead_letter_action(call.app, call.caller, "requeue", b.queue, b.ids))


@endpoint("POST", "/dead-letters/purge", summary="Delete dead letters", body=DeadSelection, answer=Count,
          errors=(NOT_FOUND, READ_ONLY))
async def purge_dead(call: Call[Any, DeadSelection]) -> Count:
    b = call.body
    return Count(count=await service.dead_letter_action(call.app, call.caller, "purge", b.queue, b.ids))


@endpoint("GET", "/workers", summary="The fleet's workers; lost ones marked", query=WorkersQuery,
          answer=list[WorkerInfo])
async def workers(call: Call[WorkersQuery, None]) -> list[WorkerInfo]:
    return await service.workers(call.app, call.query.include_lost)


@endpoint("GET", "/schedules", summary="Periodic tasks and their next run", answer=list[service.Schedule])
async def schedules(call: Call[Any, None]) -> list[service.Schedule]:
    return service.schedules(call.app)


@endpoint("GET", "/throughput", summary="Tasks finished per minute, per status, oldest minute first",
          query=ThroughputQuery, answer=list[ThroughputPoint], errors=(NOT_FOUND,))
async def throughput(call: Call[ThroughputQuery, None]) -> list[ThroughputPoint]:
    return await service.throughput(call.app, call.query.minutes, call.query.queue)


@endpoint("GET", "/audit", summary="Actions taken through the WebView, REST and gRPC, newest first",
          query=LimitQuery, answer=list[AuditEntry])
async def audit(call: Call[LimitQuery, None]) -> list[AuditEntry]:
    return await service.audit_entries(call.app, call.query.limit)
