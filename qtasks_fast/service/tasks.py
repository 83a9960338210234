"""Tasks one by one: submit by name, get (optionally waiting), list, count, detail, logs, cancel, restart.

Reads go through :mod:`qtasks_fast.query`, actions through :mod:`qtasks_fast.control` and the clients' shared
operations (:mod:`qtasks_fast.components.client_ops`), so the REST API, the pages, gRPC and the CLI agree.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from typing import TYPE_CHECKING, Any

from qtasks_fast import control, query
from qtasks_fast.abc.query import TaskDetail, TaskFilter, TaskPage
from qtasks_fast.components import client_ops
from qtasks_fast.exceptions import PayloadTooLarge, TaskArgumentsError, TaskNotFound
from qtasks_fast.schemas import Task
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest, NotFound, field_named
from qtasks_fast.service.guard import Caller, checked_priority, known_queue, translated
from qtasks_fast.steps import run

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: the longest ``wait`` a request may ask for, in seconds (a client wanting longer polls)
MAX_WAIT = 60.0


def _checked_wait(wait: float | None) -> float | None:
    if wait is not None and not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT):
        raise BadRequest("wait", f"wait must be 0 to {MAX_WAIT:g} seconds, got {wait!r}")
    return wait


def registered_names(app: BaseQueueTasks) -> list[str]:
    """Every task name the app can send: imported here, or published by its workers."""
    return sorted({*app.tasks, *getattr(app, "_published", {})})


async def submit(app: BaseQueueTasks, caller: Caller, name: str, args: list[Any] | None = None,
                 kwargs: dict[str, Any] | None = None, *, priority: int | None = None,
                 countdown: float | None = None, eta: float | None = None, unique: str | None = None,
                 wait: float | None = None) -> Task:
    """Enqueue ``name(*args, **kwargs)``, not to run before ``countdown`` seconds from now or ``eta`` (both: the
    later); with ``wait``, the final record when it finishes within that many seconds, else (and without it) the
    record as it is now. :class:`NotFound` lists the registered names."""
    caller.check_writable(f"submit {name!r}")
    _checked_wait(wait)
    checked_priority(app, priority)
    if countdown is not None and eta is not None:  # both: the later moment
        eta, countdown = max(eta, time.time() + countdown), None
    try:
        when = None if eta is None else _dt.datetime.fromtimestamp(eta, _dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise BadRequest("eta", f"eta must be a time in seconds since the epoch, got {eta!r}") from None
    try:
        with translated():
            task = await run(client_ops.adding(app, name, tuple(args or ()), dict(kwargs or {}), priority, None,
                                               countdown, when, unique))
    except TaskNotFound as exc:
        raise NotFound(str(exc).strip("'\""), registered_names(app)) from None
    except (TaskArgumentsError, PayloadTooLarge) as exc:
        raise BadRequest(_payload_field(args, kwargs), str(exc)) from None
    except ValueError as exc:  # a priority outside the levels, a unique key that is empty, a bad countdown
        raise BadRequest(_option_field(str(exc)), str(exc)) from None
    assert task is not None  # no timeout: the new record (or the unique key's holder)
    await record(app, caller, "submit", task.task_name, f"uuid {task.uuid}")
    return await get(app, str(task.uuid), wait) if wait else task


def _payload_field(args: list[Any] | None, kwargs: dict[str, Any] | None) -> str:
    """``kwargs`` when the call's keyword arguments alone cannot be encoded, else ``args``."""
    import msgspec

    try:
        msgspec.msgpack.encode(kwargs or {})
    except (TypeError, OverflowError, RecursionError, ValueError):
        try:
            msgspec.msgpack.encode(args or [])
        except (TypeError, OverflowError, RecursionError, ValueError):
            return "args"
        return "kwargs"
    return "args"


def _option_field(message: str) -> str:
    """The submit option a producer's ``ValueError`` is about (its message names it)."""
    return next((f for f in ("priority", "unique") if message.startswith((f, f"add_task: {f}"))), "countdown")


async def get(app: BaseQueueTasks, uuid: str, wait: float | None = None) -> Task:
    """Task ``uuid``'s record; with ``wait``, waits up to that long for it to finish (then returns it as it is)."""
    _checked_wait(wait)
    with translated():
        task = await run(client_ops.waiting(app, uuid, wait)) if wait else None
        task = task or await run(client_ops.getting(app, uuid))
    if task is None:
        raise NotFound(f"no task {uuid} in app {app.name!r}: unknown or expired (result_ttl)")
    return task


def checked_filter(fields: dict[str, Any]) -> TaskFilter:
    """A :class:`TaskFilter` from plain values; :class:`BadRequest` naming the field that is wrong."""
    import msgspec

    try:
        return msgspec.convert(fields, TaskFilter, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:  # also TaskFilter's own check: a bound that is no time
        raise BadRequest(field_named(str(exc), "filter"), str(exc)) from None


async def list_tasks(app: BaseQueueTasks, filter: TaskFilter, limit: int = 50, cursor: str | None = None) -> TaskPage:
    """A page of tasks matching ``filter``, newest first (``page.cursor`` for the next one)."""
    if not 1 <= limit <= query.MAX_PAGE:
        raise BadRequest("limit", f"limit must be 1 to {query.MAX_PAGE}, got {limit}")
    try:
        with translated():
            await known_queue(app, filter.queue)
            return await query.list_tasks(app, filter, limit, cursor)
    except ValueError as exc:
        raise BadRequest("cursor", str(exc)) from None


async def count_tasks(app: BaseQueueTasks, filter: TaskFilter) -> dict[str, int]:
    """How many tasks match ``filter`` per status (its status ignored)."""
    with translated():
        await known_queue(app, filter.queue)
        return await query.count_tasks(app, filter)


async def detail(app: BaseQueueTasks, uuid: str) -> TaskDetail:
    """Everything known of task ``uuid`` (timings, retry chain, restarts, logs)."""
    with translated():
        found = await query.task_detail(app, control.checked_uuid(uuid))
    if found is None:
        raise NotFound(f"no task {uuid} in app {app.name!r}: unknown or expired (result_ttl)")
    return found


async def logs(app: BaseQueueTasks, uuid: str) -> list[str]:
    """The lines captured while task ``uuid`` ran (LogCapture); :class:`NotFound` when the task is unknown."""
    with translated():
        lines = await run(client_ops.logs(app, uuid))
    if not lines:
        await get(app, uuid)  # unknown → NotFound; known without lines → []
    return lines


async def cancel(app: BaseQueueTasks, caller: Caller, uuid: str, reason: str = "") -> str:
    """Cancel task ``uuid``: ``"queued"``, ``"running"`` or ``"finished"`` (see :func:`qtasks_fast.control.cancel`)."""
    caller.check_writable(f"cancel {uuid}")
    with translated():
        result = await control.cancel(app, uuid, reason or f"cancelled by {caller.who}")
    if result == "unknown":
        raise NotFound(f"no queued, running or finished task {uuid} in app {app.name!r}")
    await record(app, caller, "cancel", uuid, result)
    return result


async def restart(app: BaseQueueTasks, caller: Caller, uuid: str) -> Task:
    """Enqueue task ``uuid``'s call again under a new uuid; the new record."""
    caller.check_writable(f"restart {uuid}")
    try:
        with translated():
            task = await control.restart(app, uuid)
    except control.TaskRecordNotFound as exc:
        raise NotFound(str(exc)) from None
    await record(app, caller, "restart", uuid, f"as {task.uuid}")
    return task
