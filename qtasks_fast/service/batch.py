"""Submit many calls at once (gRPC ``AddTasks``): one round trip to the broker per queue, checked as one.

Why its own function: a client sending thousands of tasks must not pay a broker round trip (and an audit entry)
per task, and the batch is refused whole when any call is wrong, so nothing half-sent needs cleaning up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.components import client_ops
from qtasks_fast.exceptions import PayloadTooLarge, TaskArgumentsError, TaskNotFound
from qtasks_fast.schemas import Task
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest, NotFound
from qtasks_fast.service.guard import Caller, translated
from qtasks_fast.service.tasks import registered_names
from qtasks_fast.steps import run

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: the most calls one batch may carry
MAX_BATCH = 10_000


async def submit_many(app: BaseQueueTasks, caller: Caller,
                      calls: Sequence[tuple[str, Sequence[Any], dict[str, Any]]]) -> list[Task]:
    """Enqueue every ``(name, args, kwargs)`` of ``calls``; the new records in order. Nothing is sent when one
    call is wrong (:class:`NotFound` for an unknown name, :class:`BadRequest` on ``calls`` for bad arguments)."""
    caller.check_writable(f"submit {len(calls)} tasks")
    if not 1 <= len(calls) <= MAX_BATCH:
        raise BadRequest("calls", f"calls: send 1 to {MAX_BATCH} calls per batch, got {len(calls)}")
    try:
        with translated():
            tasks = await run(client_ops.adding_many(app, list(calls)))
    except TaskNotFound as exc:
        raise NotFound(str(exc).strip("'\""), registered_names(app)) from None
    except (TaskArgumentsError, PayloadTooLarge, ValueError) as exc:
        raise BadRequest("calls", f"calls: {exc}") from None
    names = sorted({t.task_name for t in tasks})
    await record(app, caller, "submit-batch", ", ".join(names), f"{len(tasks)} tasks")
    return tasks
