"""The ``qtasks.v1.QTasksService`` servicer: QTasks' AddTask/GetTask over the app's own calls.

One implementation for both plugins: AddTask goes through ``app.add_task`` (so task options, the published
task table and argument validation apply exactly as for any producer) and GetTask through ``app.get``. A sync
app's blocking calls run in a thread so the worker's event loop keeps serving tasks meanwhile.

Errors are gRPC status codes (QTasks answers ``ok=false`` with the text for everything): a client can tell a
wrong call from an outage. Unknown task: NOT_FOUND; bad arguments or JSON: INVALID_ARGUMENT; a missing or
wrong token: UNAUTHENTICATED; AddTask on a read-only server: PERMISSION_DENIED; anything else (the broker is
down, ...): UNAVAILABLE with the error's message.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import json
from collections.abc import Callable
from typing import Any

import grpc

from qtasks_fast.exceptions import InvalidTaskId, PayloadTooLarge, TaskArgumentsError, TaskNotFound
from qtasks_fast.plugins.grpc.core import qtasks_pb2, qtasks_pb2_grpc


def _dumps(value: Any) -> str:
    """JSON of a result; a value JSON cannot hold is sent as its ``str`` (as QTasks does)."""
    return json.dumps(value, ensure_ascii=False, default=str)


def _loads(raw: str, kind: type, what: str) -> Any:
    """Decode ``args_json``/``kwargs_json``; empty means none. Bad JSON is the caller's error, not an empty call."""
    if not raw:
        return kind()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TaskArgumentsError(f"{what} is not valid JSON ({exc}); send a JSON {kind.__name__}") from None
    if not isinstance(value, kind):
        raise TaskArgumentsError(f"{what} must be a JSON {kind.__name__}, not {type(value).__name__}")
    return value


class QTasksServicer(qtasks_pb2_grpc.QTasksServiceServicer):  # type: ignore[misc]
    """AddTask/GetTask for ``app`` (sync or async client), behind a bearer token (None: no check)."""

    def __init__(self, app: Any, token: str | None, *, read_only: bool = False) -> None:
        self.app, self.read_only = app, read_only
        self._expected = f"Bearer {token}".encode() if token is not None else None

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Await an async client's coroutine; run a sync client's blocking call in a thread."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _check(self, context: grpc.aio.ServicerContext) -> None:
        if self._expected is None:
            return
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong token: send metadata 'authorization: Bearer <token>'")

    async def _fail(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, TaskNotFound):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(exc, (TaskArgumentsError, PayloadTooLarge, InvalidTaskId, TypeError, ValueError)):
            code = grpc.StatusCode.INVALID_ARGUMENT
        else:
            code = grpc.StatusCode.UNAVAILABLE
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        await context.abort(code, str(message))

    async def AddTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - gRPC's name
        await self._check(context)
        if self.read_only:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"AddTask {request.name!r} refused: this server "
                                "is read-only (started with --read-only); use a server started without it")
        try:
            args = _loads(request.args_json, list, "args_json")
            kwargs = _loads(request.kwargs_json, dict, "kwargs_json")
            task = await self._call(self.app.add_task, request.name, *args,
                                    priority=request.priority or None, timeout=request.timeout or None, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status code the client can act on
            await self._fail(context, exc)
            raise  # not reached: abort raises
        if task is None:  # a timeout was given and the task is not finished yet: QTasks answers ok with no uuid
            return qtasks_pb2.AddTaskResponse(ok=True)
        result = _dumps(task.returning) if task.returning is not None else ""
        return qtasks_pb2.AddTaskResponse(ok=True, uuid=str(task.uuid), result_json=result)

    async def GetTask(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802 - gRPC's name
        await self._check(context)
        try:
            task = await self._call(self.app.get, request.uuid)
        except Exception as exc:  # noqa: BLE001
            await self._fail(context, exc)
            raise
        if task is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no task {request.uuid}: unknown, or its record expired")
        reply = qtasks_pb2.GetTaskResponse(ok=True, status=str(task.status))
        if request.include_result:
            if task.returning is not None:
                reply.result_json = _dumps(task.returning)
            reply.traceback = task.traceback or ""
        return reply
