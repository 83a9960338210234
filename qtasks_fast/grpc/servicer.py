"""``qtasks_fast.v1.QTasksFast``: each method is one call of :mod:`qtasks_fast.service` (the REST API's), its
answer converted by :mod:`qtasks_fast.grpc.convert` and its errors mapped by :mod:`qtasks_fast.grpc.errors`.

Authentication is not here: the server's interceptor (:mod:`qtasks_fast.grpc.security`) checks every call of
both services before it reaches a method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from qtasks_fast import service
from qtasks_fast.components import client_ops
from qtasks_fast.grpc import convert
from qtasks_fast.grpc.errors import Context, streaming, unary
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc
from qtasks_fast.service.batch import Call, submit_many, with_arguments_field
from qtasks_fast.service.guard import translated
from qtasks_fast.steps import run

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: seconds one read of the event feed waits for a first event while a watcher follows
BLOCK = 1.0
#: events read per call of the feed
PAGE = 1000
#: the most uuids one WatchTasks may follow (each is checked to exist when the watch starts)
MAX_WATCHED = 1000


def _opt(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


class QTasksFastServicer(pb_grpc.QTasksFastServicer):  # type: ignore[misc]
    """The service of ``app`` as ``who`` (the audit log's name for gRPC callers), read-only or not."""

    def __init__(self, app: BaseQueueTasks, *, read_only: bool = False, who: str = "grpc") -> None:
        self.app = app
        self.caller = service.Caller(who=who, read_only=read_only)

    @unary
    async def AddTask(self, request: pb.AddTaskRequest, context: Context) -> pb.TaskReply:  # noqa: N802
        args, kwargs = convert.decoded(request, "args", list), convert.decoded(request, "kwargs", dict)
        with with_arguments_field(args, kwargs):
            task = await service.submit(self.app, self.caller, request.name, args, kwargs,
                                        priority=_opt(request, "priority"), countdown=_opt(request, "countdown"),
                                        eta=_opt(request, "eta"), unique=request.unique or None,
                                        wait=_opt(request, "wait"))
        return pb.TaskReply(task=convert.task(task, request.encoding))

    @unary
    async def AddTasks(self, request: pb.AddTasksRequest, context: Context) -> pb.AddTasksReply:  # noqa: N802
        calls = []
        for i, call in enumerate(request.calls):
            try:
                if call.HasField("wait"):
                    raise service.BadRequest("wait", "wait: not supported in a batch; wait with GetTask")
                calls.append(Call(call.name, convert.decoded(call, "args", list), convert.decoded(call, "kwargs", dict),
                                  _opt(call, "priority"), _opt(call, "countdown"), _opt(call, "eta"),
                                  call.unique or None))
            except service.BadRequest as exc:
                raise service.BadRequest(f"calls[{i}].{exc.field}", f"calls[{i}].{exc}") from None
        tasks = await submit_many(self.app, self.caller, calls)
        return pb.AddTasksReply(tasks=[convert.task(t, request.encoding) for t in tasks])

    @unary
    async def GetTask(self, request: pb.GetTaskRequest, context: Context) -> pb.TaskReply:  # noqa: N802
        uuid = convert.checked_uuid(request.uuid)
        wait = _opt(request, "wait")
        if wait:  # the final record (a retry chain followed to its last attempt), then its timings
            uuid = str((await service.get(self.app, uuid, wait)).uuid)
        try:
            found = await service.detail(self.app, uuid)
        except service.Unavailable:  # a storage without the query side: the record alone
            return pb.TaskReply(task=convert.task(await service.get(self.app, uuid), request.encoding))
        return convert.reply(found, request.encoding, request.include_logs)

    @unary
    async def ListTasks(self, request: pb.ListTasksRequest, context: Context) -> pb.ListTasksReply:  # noqa: N802
        page = await service.list_tasks(self.app, convert.list_filter(request), request.limit or 50,
                                        request.cursor or None)
        return pb.ListTasksReply(tasks=[convert.summary(s) for s in page.tasks], cursor=page.cursor or "",
                                 partial=page.partial, searched=page.searched or 0, total=page.total or 0)

    @unary
    async def CancelTask(self, request: pb.CancelTaskRequest, context: Context) -> pb.CancelTaskReply:  # noqa: N802
        uuid = convert.checked_uuid(request.uuid)
        result = await service.cancel(self.app, self.caller, uuid, request.reason)
        return pb.CancelTaskReply(uuid=uuid, result=result)

    @unary
    async def RestartTask(self, request: pb.RestartTaskRequest, context: Context) -> pb.TaskReply:  # noqa: N802
        task = await service.restart(self.app, self.caller, convert.checked_uuid(request.uuid))
        return pb.TaskReply(task=convert.task(task, request.encoding))

    @unary
    async def GetLogs(self, request: pb.GetLogsRequest, context: Context) -> pb.GetLogsReply:  # noqa: N802
        return pb.GetLogsReply(lines=await service.logs(self.app, convert.checked_uuid(request.uuid)))

    @streaming
    async def WatchTasks(self, request: pb.WatchTasksRequest,  # noqa: N802
                         context: Context) -> AsyncIterator[pb.TaskEvent]:
        uuids, names, statuses = await self._watched(request)
        queue = request.queue or None
        after = request.after or (None if request.from_oldest else "$")
        page = await service.events(self.app, after, PAGE, 0.0, queue)  # a bad id or queue: before streaming
        while True:
            for e in page.events:
                if (not uuids or e.uuid in uuids) and (not names or e.task_name in names) and (
                        not statuses or e.status in statuses):
                    yield convert.event(e)
            if request.until_idle and len(page.events) < PAGE:
                return
            if context.cancelled() or context.done():  # the client left, or the server stops: a cancellation
                return  # a client library swallowed must not keep this loop reading forever
            page = await service.events(self.app, page.cursor, PAGE, 0.0 if page.events else BLOCK, queue)

    async def _watched(self, request: pb.WatchTasksRequest) -> tuple[set[str], set[str], set[str]]:
        """The watch's filters, checked: uuids of tasks that exist, registered names, real statuses."""
        if len(request.uuids) > MAX_WATCHED:
            raise service.BadRequest("uuids", f"uuids: watch at most {MAX_WATCHED} tasks by uuid (or none: all)")
        uuids = {convert.checked_uuid(u, "uuids") for u in request.uuids}
        for uuid in uuids:
            await service.get(self.app, uuid)  # unknown: NOT_FOUND now rather than a silent stream
        statuses = {convert.status(s, "statuses") for s in request.statuses}
        names = set(request.task_names)
        if names:
            with translated():  # an unreachable broker: UNAVAILABLE as for every other read
                await run(client_ops.queues(self.app))  # the published task table, when it is due
            known = service.registered_names(self.app)
            unknown = sorted(names - set(known))
            if known and unknown:
                raise service.NotFound(f"no task {unknown[0]!r} in app {self.app.name!r}", known)
        return uuids, names, statuses
