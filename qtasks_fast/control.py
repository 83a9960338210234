"""Task control: cancel, restart, status, dead letters, purge and inspect — for ``app.cancel(...)`` and the CLI.

Each function takes the app (sync or async client alike) and talks to its broker
and storage directly; the app's thin wrappers and ``qtasks-fast cancel/restart/
dlq/purge/inspect`` call these. ``queue=None`` means every queue of the app
(``app.queues``: the default queue, each registered task's, and those of the published task table).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import time
import uuid as _uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.capabilities import (
    Cancel,
    DeadLetter,
    DeadLetters,
    FlushAll,
    NotSupported,
    Purge,
    QueueStatistics,
    WorkerRegistry,
    require,
)
from qtasks_fast.exceptions import ConfigError, InvalidTaskId, QTasksError
from qtasks_fast.faults import describe, transient
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.schemas import META_RESTART_OF, Task, record_from_envelope

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("control")
#: what :func:`cancel` returns (see ``Broker.cancel``)
CANCEL_RESULTS = ("queued", "running", "finished", "unknown")


class TaskRecordNotFound(QTasksError, LookupError):
    """No record under that uuid (never enqueued here, or expired after ``result_ttl``)."""


def checked_uuid(value: object) -> str:
    """``value`` (a ``uuid.UUID`` or its text in any form ``uuid.UUID`` reads) as the canonical text the
    broker keys records by; :class:`InvalidTaskId` for anything else (``"../../x"``), which must never
    become part of a key."""
    if isinstance(value, _uuid.UUID):
        return str(value)
    try:
        return str(_uuid.UUID(str(value)))
    except ValueError:
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InvalidTaskId(f"{shown} is not a task uuid (such as 0b7c6f1e-3a5d-4c2b-9e8f-1a2b3c4d5e6f): pass the "
                            "uuid add_task returned") from None


async def _queues(app: BaseQueueTasks, queue: str | None) -> list[str]:
    return [queue] if queue else await app.all_queues()


async def delete_finished(app: BaseQueueTasks) -> int:
    """Delete the records of every finished task of the app's queues (``config.delete_finished_tasks`` at a
    fleet's start, as QTasks does when its broker starts); returns how many, and logs it."""
    queues = await app.all_queues()
    try:
        count = await app.storage.delete_finished(queues)
    except NotSupported:
        raise ConfigError(f"config.delete_finished_tasks is set but {type(app.storage).__name__} cannot delete "
                          "finished records: unset it, or implement Storage.delete_finished") from None
    log.info("delete_finished_tasks: deleted %d finished task record(s) of queue(s) %s", count, ", ".join(queues))
    return count


async def status(app: BaseQueueTasks, uuid: str) -> Task | None:
    """The task's record (``decode=`` applied to a success), or None when unknown or expired."""
    return app._finish(await app.storage.get(checked_uuid(uuid), await app.all_queues()))


async def cancel(app: BaseQueueTasks, uuid: str, reason: str = "") -> str:
    """Cancel a task wherever it is: ``"queued"`` (it will never run), ``"running"`` (a worker holds it and
    was asked to stop it: one fetched but not started is dropped unrun; an async task is cancelled at its
    next ``await``; a sync task in a thread is recorded ``cancel`` at once while its thread runs on, result
    discarded; a process-executor task's child is killed; an ``executor="inline"`` task cannot be
    interrupted), ``"finished"`` (too late; nothing changed) or ``"unknown"``. Tries the record's queue
    first, then every queue of the app."""
    uuid = checked_uuid(uuid)
    broker, storage = app._resolve()
    queues = await app.all_queues()
    record = await storage.get(uuid, queues)
    if record is not None:
        queues = [record.queue] + [q for q in queues if q != record.queue]
    cancelling = require(broker, Cancel)
    for q in queues:
        result = await cancelling.cancel(uuid, q, reason, storage)
        if result != "unknown":
            name = record.task_name if record is not None else "?"
            log.info("cancel %s in queue %r: %s%s", task_label(name, uuid), q, result,
                     f" ({reason})" if reason else "")
            return result
    return "unknown"


async def restart(app: BaseQueueTasks, uuid: str) -> Task:
    """Enqueue the same call again under a new uuid (``meta[META_RESTART_OF]`` = the original's) and
    return the new ``new`` record. The original record is left as it is.

    Raises :class:`TaskRecordNotFound` when there is no record of ``uuid`` to copy the call from.
    """
    uuid = checked_uuid(uuid)
    record = await app.storage.get(uuid, await app.all_queues())
    if record is None:
        raise TaskRecordNotFound(f"no record of task {uuid} in app {app.name!r} (queues {app.queues}): it was "
                                 f"never enqueued here or expired after result_ttl={app.config.result_ttl:g}s; "
                                 "enqueue the call again with add_task")
    # through build + send, so the task manager and the middlewares see the restart like any call
    env, uid = app.build(record.task_name, list(record.args), dict(record.kwargs), record.priority, record.queue,
                         meta={META_RESTART_OF: uuid})
    await app.send([env])
    log.info("restart %s as %s", task_label(record.task_name, uuid), task_label(env.task_name, env.uuid))
    return record_from_envelope(env, uuid=uid)


async def dlq_list(app: BaseQueueTasks, queue: str | None = None, count: int = 100) -> list[DeadLetter]:
    """Dead letters of ``queue`` (None: every app queue), newest first, at most ``count``."""
    broker = require(app.broker, DeadLetters)
    found: list[DeadLetter] = []
    for q in await _queues(app, queue):
        found += await broker.dead_letters(q, count)
    found.sort(key=lambda d: d.at, reverse=True)
    return found[:count]


async def dlq_requeue(app: BaseQueueTasks, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
    """Put dead letters (``ids``, or all) back on their queue with a fresh delivery count; return how many."""
    return await _each_queue_dead(app, queue, ids, "requeue_dead", "requeued")


async def dlq_purge(app: BaseQueueTasks, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
    """Delete dead letters (``ids``, or all); return how many."""
    return await _each_queue_dead(app, queue, ids, "purge_dead", "deleted")


async def _each_queue_dead(app: BaseQueueTasks, queue: str | None, ids: Sequence[str] | None, op: str,
                           done: str) -> int:
    """Run the broker's dead-letter ``op`` on ``queue`` (None: every queue of the app); the total it reports."""
    if ids is not None and not ids:  # an empty selection means none, never all
        return 0
    method = getattr(require(app.broker, DeadLetters), op)
    total = 0
    for q in await _queues(app, queue):
        total += await method(q, None if ids is None else list(ids))
    if total:
        log.info("%s %d dead letter(s)", done, total)
    return total


async def purge(app: BaseQueueTasks, queue: str) -> int:
    """Drop every queued and delayed (not running) message of ``queue``; their records become ``cancel``."""
    n = await require(app.broker, Purge).purge(queue)
    log.info("purged %d message(s) from queue %r", n, queue)
    return n


class WorkersRunning(QTasksError, RuntimeError):
    """``flush_all`` while workers of the app are registered: they hold deliveries and read streams that a
    flush would delete under them."""


async def flush_all(app: BaseQueueTasks) -> None:
    """QTasks ``app.flush_all()``: delete everything of this app (``Broker.flush_all``) in every queue it knows
    (its tasks', the published table read now, and those its task managers routed calls to in any process:
    ``Broker.note_queues``), and nothing of any other app. Refused while a worker of the app is live, and when its
    storage is not the broker's own backend (its records would survive): each with a one-line reason."""
    broker, storage = app._resolve()
    flushing = require(broker, FlushAll)  # checked first: the registry is not asked for a flush that cannot run
    live = await require(broker, WorkerRegistry).workers()
    if live:
        names = ", ".join(sorted(w.key for w in live)[:3]) + (", ..." if len(live) > 3 else "")
        raise WorkersRunning(f"flush_all: {len(live)} worker(s) of app {app.name!r} are running ({names}); stop "
                             "them first (SIGTERM drains them), then call flush_all again")
    if not broker.fused(storage):
        raise ConfigError(f"flush_all: the storage {type(storage).__name__} is not the broker's backend, so its "
                          "records would be kept; flush it with its own tools, or use the broker's storage")
    await app.refresh_tasks()  # not the copy read up to a minute ago: another process may have published since
    queues = app.queues
    await flushing.flush_all(queues)
    app._published = {}  # the table it had read is gone with the rest
    log.warning("flush_all: deleted every message, record and dead letter of app %r (queues %s)", app.name,
                ", ".join(queues))


# ------------------------------------------------------------------------------------------ inspect
#: TaskFunc attributes ``inspect`` reports when the task has them (newer options appear as they are added)
TASK_FIELDS = ("queue", "priority", "max_time", "retry", "retry_on_exc", "retry_backoff", "retry_backoff_max",
               "retry_jitter", "concurrency_limit", "executor", "echo", "tags", "description", "decode",
               "generate_handler", "middlewares_before", "middlewares_after")


def _plain(value: Any) -> Any:
    """A JSON-ready rendering of an option: classes and callables by name, containers recursively."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, type) or callable(value):
        return getattr(value, "__qualname__", None) or type(value).__qualname__
    return type(value).__qualname__


def runs_on(tf: Any) -> str:
    """What actually runs the task: an async task runs on the worker's event loop whatever its ``executor``
    option says (``thread`` is only the default for sync ones); a custom executor is named by its class."""
    custom = getattr(tf, "custom_executor", None)
    if custom is not None:
        return f"custom ({type(custom).__qualname__})"
    if tf.is_async or tf.is_async_gen:
        return "event loop"
    return str(tf.executor)


def task_info(tf: Any) -> dict[str, Any]:
    kind = "async generator" if tf.is_async_gen else "generator" if tf.is_gen else "async" if tf.is_async else "sync"
    out: dict[str, Any] = {"name": tf.name, "kind": kind,
                           "function": f"{getattr(tf.func, '__module__', '?')}.{getattr(tf.func, '__qualname__', '?')}"}
    for field in TASK_FIELDS:
        if hasattr(tf, field):
            out[field] = _plain(getattr(tf, field))
    if hasattr(tf, "executor"):
        out["executor"] = runs_on(tf)
    return out


def _config(app: BaseQueueTasks) -> tuple[dict[str, Any], dict[str, str]]:
    """The app's settings as a worker applies them, and a note for each that is derived from another."""
    config = dataclasses.asdict(app.config) if dataclasses.is_dataclass(app.config) else dict(vars(app.config))
    notes: dict[str, str] = {}
    if isinstance(config.get("prefetch"), int) and isinstance(config.get("concurrency"), int):
        from qtasks_fast.config import effective_prefetch

        raw = config["prefetch"]
        config["prefetch"] = effective_prefetch(config["concurrency"], raw)
        if raw < 0:
            notes["prefetch"] = f"follows concurrency: prefetch={raw}; a worker's --concurrency moves it too"
        elif raw > config["concurrency"]:
            notes["prefetch"] = f"capped at concurrency: prefetch={raw}"
    return _plain(config), notes


def inspect(app: BaseQueueTasks) -> dict[str, Any]:
    """What this app is: registered tasks with their options, its config, queues, broker and periodic schedules.

    ``config`` holds the values a worker applies (``prefetch`` -1 shows as the number it follows), with a
    line per derived value in ``config_notes``; a task's ``executor`` is what runs it (``event loop`` for
    an async task). What the fleet is doing comes from :func:`fleet`."""
    from qtasks_fast.periodic import schedules

    config, notes = _config(app)
    return {
        "app": app.name,
        "broker": repr(app.broker),  # the broker's repr redacts passwords
        "queues": app.queues,
        "config": config,
        "config_notes": notes,
        "tasks": {name: task_info(tf) for name, tf in sorted(app.tasks.items())},
        "periodic": [s.to_dict() for s in schedules(app).values()],
    }


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).isoformat(timespec="seconds")


async def fleet(app: BaseQueueTasks) -> dict[str, Any]:
    """What the broker says about the fleet now: ``queue_stats`` (per app queue: waiting, in_flight, delayed,
    dead; see ``Broker.queue_stats``), the live ``workers`` and the ``lost_workers`` whose heartbeat stopped
    less than an hour ago (see ``WorkerRegistry.workers``), each None with a line in ``notes`` when the broker
    cannot say (a custom broker without the feature, an unreachable one).

    Never raises for the broker's sake: ``inspect`` still shows the app's side."""
    out: dict[str, Any] = {"queue_stats": None, "workers": None, "lost_workers": None, "notes": []}
    broker = app.broker

    async def stats() -> dict[str, Any]:
        counting = require(broker, QueueStatistics)
        return {q: msgspec.structs.asdict(await counting.queue_stats(q)) for q in app.queues}

    async def workers() -> list[dict[str, Any]]:
        now = time.time()
        listed = sorted(await require(broker, WorkerRegistry).workers(include_lost=True),
                        key=lambda w: (w.id, w.host, w.pid))
        return [{**msgspec.structs.asdict(w), "started": _iso(w.started), "heartbeat": _iso(w.heartbeat),
                 "heartbeat_age": round(max(now - w.heartbeat, 0.0), 1)} for w in listed]

    for key, what, call in (("queue_stats", "queue counts", stats), ("workers", "live workers", workers)):
        try:
            out[key] = await call()
        except NotSupported as exc:
            out["notes"].append(f"{what} unknown: {exc}")
        except Exception as exc:  # noqa: BLE001 - an unreachable broker: say so once, show the rest
            if not _broker_failure(exc):
                raise
            from qtasks_fast.exceptions import BrokerUnavailable

            why = str(exc) if isinstance(exc, BrokerUnavailable) else \
                f"the broker did not answer ({describe(exc)}); is it reachable (--broker / QTASKS_BROKER_URL)?"
            out["notes"].append(f"queue counts and live workers unknown: {why}")
            break
    if out["workers"] is not None:  # a worker whose heartbeat stopped (killed, host down) is listed apart
        out["lost_workers"] = [w for w in out["workers"] if w["lost"]]
        out["workers"] = [w for w in out["workers"] if not w["lost"]]
    return out


async def ping(app: BaseQueueTasks, server: bool = True) -> bool:
    """QTasks ``app.ping(server=True)``: True when a worker of this app is live (registered, heartbeat fresh;
    ``Broker.workers``); ``server=False``: True when the broker answers. False when the broker cannot be
    reached, rather than raising: a health probe asks yes or no. A broker without a worker registry raises
    ``NotSupported`` for ``server=True`` (it cannot tell, and a guessed True would hide a dead fleet)."""
    try:
        await app.broker.ping()
        return bool(await require(app.broker, WorkerRegistry).workers()) if server else True
    except Exception as exc:
        if _broker_failure(exc):
            return False
        raise


def _broker_failure(exc: BaseException) -> bool:
    """True for a failure of the broker rather than of this code: unreachable, refusing, an error reply."""
    from qtasks_fast.exceptions import BrokerError

    return isinstance(exc, (BrokerError, ConnectionError, OSError, TimeoutError)) or transient(exc)
