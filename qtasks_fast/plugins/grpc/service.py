"""The ``qtasks.v1.QTasksService`` servicer: QTasks' AddTask/GetTask as calls of :mod:`qtasks_fast.service`.

Why the service layer (as ``qtasks_fast.v1.QTasksFast`` and the REST API): one implementation of submit and get,
so the surfaces cannot disagree: the same audit entry, the same argument checks, the same read-only rule and one
mapping of errors to status codes (:mod:`qtasks_fast.grpc.errors`). Authentication is the server's interceptor's.

AddTask's ``timeout`` waits on the event loop (the storage's async wait, for a sync app too), bounded like
QTasksFast's ``wait`` (0 to 60 s): a wait holds no thread, so abandoned calls cannot starve the others, and a
client that leaves cancels its wait. ``kwargs_json`` goes to the task whole: its keys are never taken as
``add_task``'s own options (``priority``, ``countdown``, ...).

Errors are status codes (QTasks answers ``ok=false`` with the text for everything), so a client can tell a
wrong call from an outage: NOT_FOUND (unknown task, listing the registered names), INVALID_ARGUMENT (the
details start with the field: ``args_json: ...``), PERMISSION_DENIED (read-only), UNAVAILABLE (the broker).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import service
from qtasks_fast.grpc.errors import Context, unary
from qtasks_fast.plugins.grpc.core import qtasks_pb2, qtasks_pb2_grpc
from qtasks_fast.service.batch import with_arguments_field
from qtasks_fast.service.tasks import MAX_WAIT

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

_encoder = msgspec.json.Encoder(enc_hook=str)


def _dumps(value: Any) -> str:
    """JSON of a result; a value JSON cannot hold is sent as its ``str`` (as QTasks does), NaN/inf as null."""
    return _encoder.encode(value).decode()


def _loads(raw: str, kind: type, field: str) -> Any:
    """Decode ``args_json``/``kwargs_json`` (strict JSON: no NaN/Infinity); empty means none.
    :class:`BadRequest` naming the field for bad JSON or another type."""
    if not raw:
        return kind()
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise service.BadRequest(field, f"{field}: not valid JSON ({exc}); send a JSON "
                                        f"{'array' if kind is list else 'object'}") from None
    except RecursionError:
        raise service.BadRequest(field, f"{field}: nested too deeply; send a flatter value") from None
    if not isinstance(value, kind):
        raise service.BadRequest(field, f"{field}: must be a JSON {'array' if kind is list else 'object'}, "
                                        f"got {type(value).__name__}")
    return value


def _timeout(value: float) -> float | None:
    """AddTask's ``timeout`` (0: none), bounded like QTasksFast's ``wait``."""
    if not (math.isfinite(value) and 0 <= value <= MAX_WAIT):
        raise service.BadRequest("timeout", f"timeout: must be 0 to {MAX_WAIT:g} seconds (0: do not wait), got "
                                            f"{value!r}; for a longer wait, poll GetTask")
    return value or None


class QTasksServicer(qtasks_pb2_grpc.QTasksServiceServicer):  # type: ignore[misc]
    """AddTask/GetTask for ``app`` (sync or async client) as ``who`` (the audit log's name), read-only or not."""

    def __init__(self, app: BaseQueueTasks, *, read_only: bool = False, who: str = "grpc") -> None:
        self.app = app
        self.caller = service.Caller(who=who, read_only=read_only)

    @unary
    async def AddTask(self, request: Any, context: Context) -> Any:  # noqa: N802 - gRPC's name
        self.caller.check_writable(f"AddTask {request.name!r}")
        args = _loads(request.args_json, list, "args_json")
        kwargs = _loads(request.kwargs_json, dict, "kwargs_json")
        timeout = _timeout(request.timeout)
        with with_arguments_field(args, kwargs, "args_json", "kwargs_json"):
            task = await service.submit(self.app, self.caller, request.name, args, kwargs,
                                        priority=request.priority or None, wait=timeout)
        if timeout is not None and not task.finished:  # not done in time: QTasks answers ok without a result
            return qtasks_pb2.AddTaskResponse(ok=True, uuid=str(task.uuid))
        result = _dumps(task.returning) if task.returning is not None else ""
        return qtasks_pb2.AddTaskResponse(ok=True, uuid=str(task.uuid), result_json=result)

    @unary
    async def GetTask(self, request: Any, context: Context) -> Any:  # noqa: N802 - gRPC's name
        task = await service.get(self.app, request.uuid)
        reply = qtasks_pb2.GetTaskResponse(ok=True, status=str(task.status))
        if request.include_result:
            if task.returning is not None:
                reply.result_json = _dumps(task.returning)
            reply.traceback = task.traceback or ""
        return reply
