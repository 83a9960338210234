"""Submit many calls at once (gRPC ``AddTasks``): one round trip to the broker per queue, checked as one.

Why its own function: a client sending thousands of tasks must not pay a broker round trip (and an audit entry)
per task, and the batch is refused whole when any call is wrong, so nothing half-sent needs cleaning up. Each call
keeps its own options (priority, countdown/eta, unique key) as a single submit would; a batch without any takes
the bulk path (:func:`~qtasks_fast.components.client_ops.adding_many`). A wrong call is named by its index
(``calls[3].kwargs: ...``), so a client of a 10,000-call batch knows which one to fix.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from qtasks_fast.components import client_ops
from qtasks_fast.components.producer import call_options
from qtasks_fast.exceptions import PayloadTooLarge, TaskArgumentsError, TaskNotFound
from qtasks_fast.schemas import Task, record_from_envelope
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest, NotFound
from qtasks_fast.service.guard import Caller, checked_priority, translated
from qtasks_fast.service.tasks import registered_names
from qtasks_fast.steps import Steps, run

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

#: the most calls one batch may carry
MAX_BATCH = 10_000
#: what building a call raises for bad arguments or options (an integer msgpack cannot hold: OverflowError)
ARGUMENT_ERRORS = (TaskArgumentsError, PayloadTooLarge, TypeError, ValueError, OverflowError, RecursionError)


class Call(NamedTuple):
    """One call of a batch, with the options a single submit takes (None: the task's own)."""

    name: str
    args: Sequence[Any]
    kwargs: dict[str, Any]
    priority: int | None = None
    countdown: float | None = None
    eta: float | None = None
    unique: str | None = None


def arguments_field(message: str, args: Sequence[Any], kwargs: dict[str, Any],
                    names: tuple[str, str] = ("args", "kwargs")) -> str:
    """Which of ``args``/``kwargs`` an argument error is about: kwargs when only they were given or the message
    names one of their keys (``'b'``, ``$.b``); else args."""
    if kwargs and (not args or any(f"'{k}'" in message or f"$.{k}`" in message for k in kwargs)):
        return names[1]
    return names[0]


@contextmanager
def with_arguments_field(args: Sequence[Any], kwargs: dict[str, Any], args_name: str = "args",
                         kwargs_name: str = "kwargs") -> Iterator[None]:
    """A submit's :class:`BadRequest` on ``args`` renamed to the field really at fault (``kwargs``, or the
    surface's own names such as QTasks' ``args_json``/``kwargs_json``)."""
    try:
        yield
    except BadRequest as exc:
        if exc.field not in ("args", "kwargs"):
            raise
        text = str(exc).removeprefix(f"{exc.field}: ")
        field = (kwargs_name if exc.field == "kwargs"
                 else arguments_field(text, args, kwargs, (args_name, kwargs_name)))
        if (exc.field, field) == ("args", "args"):
            raise  # already right
        raise BadRequest(field, f"{field}: {text}") from None


def _when(i: int, call: Call) -> float | None:
    """The call's start time (countdown and eta: the later), checked as a single submit checks them."""
    eta = call.eta
    if call.countdown is not None:
        if not math.isfinite(call.countdown):
            raise BadRequest(f"calls[{i}].countdown", f"calls[{i}].countdown: must be a finite number of seconds, "
                                                      f"got {call.countdown!r}")
        later = time.time() + call.countdown
        eta = later if eta is None else max(eta, later)
    if eta is not None:
        try:
            _dt.datetime.fromtimestamp(eta, _dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            field = f"calls[{i}].{'eta' if call.countdown is None else 'countdown'}"
            raise BadRequest(field, f"{field}: must lead to a time in seconds since the epoch, got "
                                    f"{eta if call.countdown is None else call.countdown!r}") from None
    return eta


@contextmanager
def _call_at(i: int, call: Call) -> Iterator[None]:
    """Bad arguments or options of call ``i`` as :class:`BadRequest` naming ``calls[i].<field>``."""
    try:
        yield
    except ARGUMENT_ERRORS as exc:
        text = str(exc)
        own = type(exc) is ValueError  # the options' own checks (a priority outside the levels, an empty key)
        if own and ("priority" in text or "unique" in text):
            field = "priority" if "priority" in text else "unique"
        else:
            field = arguments_field(text, call.args, call.kwargs)
        raise BadRequest(f"calls[{i}].{field}", f"calls[{i}].{field}: {text}") from None


def _adding_each(app: BaseQueueTasks, calls: Sequence[Call]) -> Steps[list[Task]]:
    """The batch built call by call (each with its options), sent in one round trip per queue."""
    built = []
    for i, call in enumerate(calls):
        if call.name not in app.tasks:
            yield from app._resolving(call.name)
        eta = _when(i, call)
        checked_priority(app, call.priority, f"calls[{i}].priority")
        with _call_at(i, call):
            when, meta = call_options(app.config, None, eta, call.unique or None)
            built.append(app.build(call.name, call.args, call.kwargs, call.priority, eta=when, meta=meta))
    skipped = yield from app._sending([env for env, _ in built], False)
    records = [record_from_envelope(env, uuid=uid) for env, uid in built]
    for i, (env, _) in enumerate(built):
        if skipped and env.uuid in skipped:  # a unique key already held: its holder's record
            records[i] = (yield from client_ops.holder(app, skipped[env.uuid], env.queue, None)) or records[i]
    return records


def _locate(app: BaseQueueTasks, calls: Sequence[Call], exc: BaseException) -> BadRequest:
    """Which call of a refused bulk batch is wrong: each is built again (nothing sent) until one fails."""
    for i, call in enumerate(calls):
        with _call_at(i, call):
            app.build(call.name, call.args, call.kwargs)
    return BadRequest("calls", f"calls: {exc}")


async def submit_many(app: BaseQueueTasks, caller: Caller, calls: Sequence[Call | tuple[Any, ...]]) -> list[Task]:
    """Enqueue every call of ``calls`` (:class:`Call`, or a ``(name, args, kwargs)`` tuple); the new records in
    order. Nothing is sent when one call is wrong (:class:`NotFound` for an unknown name, :class:`BadRequest` on
    ``calls[i].<field>`` for bad arguments or options)."""
    caller.check_writable(f"submit {len(calls)} tasks")
    if not 1 <= len(calls) <= MAX_BATCH:
        raise BadRequest("calls", f"calls: send 1 to {MAX_BATCH} calls per batch, got {len(calls)}")
    checked = [c if isinstance(c, Call) else Call(*c) for c in calls]
    plain = all(c.priority is None and c.countdown is None and c.eta is None and not c.unique for c in checked)
    try:
        with translated():
            if plain:
                tasks = await run(client_ops.adding_many(app, [(c.name, c.args, c.kwargs) for c in checked]))
            else:
                tasks = await run(_adding_each(app, checked))
    except TaskNotFound as exc:
        raise NotFound(str(exc).strip("'\""), registered_names(app)) from None
    except ARGUMENT_ERRORS as exc:
        if isinstance(exc, BadRequest):
            raise
        raise _locate(app, checked, exc) from None
    names = sorted({t.task_name for t in tasks})
    await record(app, caller, "submit-batch", ", ".join(names), f"{len(tasks)} tasks")
    return tasks
