"""The client calls of both ``QueueTasks`` (sync) and ``qtasks_fast.asyncio.QueueTasks``, each written once.

Each operation is a generator of steps (:mod:`qtasks_fast.steps`): the sync client drives it with
``run_sync``, the async one with ``run``. Why: the two clients' ``add_task``/``add_tasks``/``get``/``wait``/
``get_logs`` were written twice and could drift (one following a retry chain or resolving a name the other
does not); now only each step knows its two ways (``Either(coroutine, blocking)``).
"""

from __future__ import annotations

import datetime as _dt
import uuid as _uuid
from collections.abc import Iterable
from functools import partial
from itertools import chain
from typing import TYPE_CHECKING, Any

from qtasks_fast.components.producer import NeedsLookup, Signature, as_call, call_options, task_keywords
from qtasks_fast.control import checked_uuid
from qtasks_fast.schemas import Minted, Task, record_from_envelope
from qtasks_fast.steps import Either, Steps

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


def queues(app: BaseQueueTasks) -> Steps[list[str]]:
    """``app.queues``, after reading the published table when it is due."""
    if app.table_due():
        yield Either(app.refresh_tasks, lambda: app_portal_refresh(app))
    return app.queues


def app_portal_refresh(app: BaseQueueTasks) -> None:
    from qtasks_fast.portal import portal

    portal().run(app.refresh_tasks())


def adding(app: BaseQueueTasks, task_name: str | Signature, args: tuple[Any, ...], kwargs: dict[str, Any],
           priority: int | None, timeout: float | None, countdown: float | None,
           eta: _dt.datetime | float | None, unique: str | tuple[str, float] | None,
           connection: Any = None) -> Steps[Task | None]:
    """``add_task``: build, send, and with ``timeout`` wait for the final record (None when not final by then).
    With ``connection``, the send happens inside that open database transaction (``TransactionalEnqueue``)."""
    name, call_args, kwargs = as_call(task_name, args, kwargs)
    if (countdown is not None or eta is not None or unique is not None or connection is not None) \
            and type(task_name) is not tuple:  # a signature's keywords are the task's: these are then options
        countdown, eta, unique, connection, kwargs = task_keywords(app.tasks, name, kwargs, countdown, eta, unique,
                                                                   connection)
    if connection is not None and timeout is not None:
        raise ValueError("add_task(connection=..., timeout=...) would wait for a task that no worker can see before "
                         "your transaction commits: drop timeout, commit, then app.wait(task.uuid, timeout)")
    if name not in app.tasks:  # not imported here: the published table has its options (or refuses it)
        yield from app._resolving(name)
    when, meta = call_options(app.config, countdown, eta, unique)
    env, uid = app.build(name, call_args, kwargs, priority, eta=when, meta=meta)
    # a uuid minted by build, unless a middleware may have set its own (see Minted)
    skipped = yield from app._sending([env] if app._mw_active else Minted([env]), timeout is not None, connection)
    if skipped:
        return (yield from holder(app, skipped[env.uuid], env.queue, timeout))
    if timeout is None:
        return record_from_envelope(env, uuid=uid)
    storage, uuid, where = app.storage, env.uuid, [env.queue]
    task = yield Either(lambda: storage.wait(uuid, where, timeout, fresh=True),
                        lambda: storage.wait_sync(uuid, where, timeout, fresh=True))
    return app._finish(task) if task is not None and task.finished else None


def holder(app: BaseQueueTasks, uuid: str, queue: str, timeout: float | None) -> Steps[Task | None]:
    """What a unique-skipped ``add_task`` returns: the holder's record (awaited like the call asked)."""
    if timeout is None:
        storage, where = app.storage, [queue, *app.queues]
        task = yield Either(lambda: storage.get(uuid, where), lambda: storage.get_sync(uuid, where))
        return app._finish(task)
    return (yield from waiting(app, uuid, timeout))


def adding_many(app: BaseQueueTasks, calls: Iterable[Signature]) -> Steps[list[Task]]:
    """``add_tasks``: bulk enqueue in one round trip per queue."""
    calls = calls if isinstance(calls, list) else list(calls)
    sizes = app.part_sizes(len(calls))
    records: list[Task] = []
    parts = app.build_parts(calls, records, sizes)
    try:
        envs = next(parts)
    except NeedsLookup as miss:  # a name not imported here: read the published table, then build again
        yield from app._resolving(miss.args[0])
        parts = app.build_parts(calls, records, sizes)
        envs = next(parts)
    if len(sizes) > 1:  # the broker takes the batch in parts: the rest is built while it stores the first
        yield from app._sending_parts(chain((envs,), parts))
        return records
    skipped = yield from app._sending(envs, False)
    if skipped:  # only a task manager can make bulk calls unique
        for i, env in enumerate(envs):
            if env.uuid in skipped:
                records[i] = (yield from holder(app, skipped[env.uuid], env.queue, None)) or records[i]
    return records


def getting(app: BaseQueueTasks, uuid: str | _uuid.UUID) -> Steps[Task | None]:
    """``get``: the record, or None when unknown or expired."""
    uuid, storage = checked_uuid(uuid), app.storage
    where = yield from queues(app)
    task = yield Either(lambda: storage.get(uuid, where), lambda: storage.get_sync(uuid, where))
    return app._finish(task)


def waiting(app: BaseQueueTasks, uuid: str | _uuid.UUID, timeout: float) -> Steps[Task | None]:
    """``wait``: the final record (following the retry chain), None if unknown or still running."""
    uuid, storage = checked_uuid(uuid), app.storage
    where = yield from queues(app)
    task = yield Either(lambda: storage.wait(uuid, where, timeout), lambda: storage.wait_sync(uuid, where, timeout))
    return app._finish(task) if task is not None and task.finished else None


def logs(app: BaseQueueTasks, uuid: str | _uuid.UUID) -> Steps[list[str]]:
    """``get_logs``: the lines captured while the task ran, from whichever of the app's queues has them."""
    uuid, storage = checked_uuid(uuid), app.storage
    for q in (yield from queues(app)):
        lines = yield Either(partial(storage.get_logs, uuid, q), partial(storage.get_logs_sync, uuid, q))
        if lines:
            return list(lines)
    return []
