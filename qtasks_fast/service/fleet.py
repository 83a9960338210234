"""The fleet: queues, dead letters, purge, workers, schedules, the event feed and health."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import control, query
from qtasks_fast.abc.capabilities import WorkerInfo
from qtasks_fast.abc.query import EventPage, RawEventPage
from qtasks_fast.query import QueueOverview
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest
from qtasks_fast.service.guard import Caller, known_queue, translated

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks


class DeadLetterView(msgspec.Struct, kw_only=True):
    """A dead letter as a client shows it: the call decoded when it can be, else the payload as hex."""

    id: str
    uuid: str
    queue: str
    task_name: str | None
    reason: str
    at: float
    priority: int
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    body_hex: str | None = None


class Schedule(msgspec.Struct, kw_only=True):
    """A periodic task of the app and its next run (ISO 8601 UTC; None when it never runs again)."""

    name: str
    task_name: str
    schedule: str
    queue: str | None
    next_run: str | None


class Health(msgspec.Struct, kw_only=True):
    """``ok`` when the broker answers and at least one worker is live."""

    ok: bool
    broker: bool
    workers: int
    reason: str = ""



async def queues(app: BaseQueueTasks) -> list[QueueOverview]:
    """Each queue: depth per priority, in flight per worker, delayed, dead, tasks per status."""
    with translated():
        return await query.queues(app)


async def dead_letters(app: BaseQueueTasks, queue: str | None = None, limit: int = 100) -> list[DeadLetterView]:
    """Newest dead letters of ``queue`` (None: every queue), at most ``limit`` (1..1000)."""
    from qtasks_fast.cli_control import _dead_dict

    if not 1 <= limit <= 1000:
        raise BadRequest("limit", f"limit must be 1 to 1000, got {limit}")
    with translated():
        await known_queue(app, queue)
        letters = await control.dlq_list(app, queue, limit)
    out = []
    for d in letters:
        plain = _dead_dict(d)
        out.append(DeadLetterView(id=d.id, uuid=d.uuid, queue=d.queue, task_name=d.task_name, reason=d.reason,
                                  at=d.at, priority=d.priority, args=plain.get("args"), kwargs=plain.get("kwargs"),
                                  body_hex=plain.get("body")))
    return out


async def dead_letter_action(app: BaseQueueTasks, caller: Caller, action: str, queue: str | None,
                             ids: Sequence[str] | None) -> int:
    """``requeue`` or ``purge`` the dead letters ``ids`` (None: all of ``queue``); how many it touched."""
    if action not in ("requeue", "purge"):
        raise BadRequest("action", f"action must be requeue or purge, got {action!r}")
    caller.check_writable(f"dead letter {action}")
    with translated():
        await known_queue(app, queue)
        fn = control.dlq_requeue if action == "requeue" else control.dlq_purge
        n = await fn(app, queue, ids)
    await record(app, caller, f"dlq-{action}", queue or "*", f"{n} of {'all' if ids is None else len(ids)}")
    return n


async def purge(app: BaseQueueTasks, caller: Caller, queue: str) -> int:
    """Drop every waiting message of ``queue`` (records set to cancel); how many."""
    caller.check_writable(f"purge {queue!r}")
    with translated():
        await known_queue(app, queue)
        n = await control.purge(app, queue)
    await record(app, caller, "purge", queue, str(n))
    return n


async def workers(app: BaseQueueTasks, include_lost: bool = True) -> list[WorkerInfo]:
    """The fleet's workers, live first; lost ones (heartbeat stopped within the hour) marked ``lost``."""
    with translated():
        return await query.workers(app, include_lost)


def schedules(app: BaseQueueTasks) -> list[Schedule]:
    """The app's periodic tasks and their next run."""
    from qtasks_fast.periodic import schedules as found

    now = time.time()
    return [Schedule(name=d["name"], task_name=d["task_name"], schedule=d["schedule"], queue=d["queue"],
                     next_run=d["next_run"]) for d in (s.to_dict(now) for s in found(app).values())]


async def events(app: BaseQueueTasks, after: str | None = "$", limit: int = 100, block: float = 0.0,
                 queue: str | None = None) -> EventPage:
    """Status changes after event id ``after`` (``"$"``: from now; None: the oldest kept)."""
    if not 1 <= limit <= 1000:
        raise BadRequest("limit", f"limit must be 1 to 1000, got {limit}")
    try:
        with translated():
            await known_queue(app, queue)
            return await query.events(app, after, limit, block, queue)
    except ValueError as exc:
        raise BadRequest("after", str(exc)) from None


async def raw_events(app: BaseQueueTasks, after: str | None = "$", limit: int = 100, block: float = 0.0,
                     queue: str | None = None) -> RawEventPage:
    """:func:`events` as ids and JSON (no event object each): what the SSE stream forwards."""
    if not 1 <= limit <= 1000:
        raise BadRequest("limit", f"limit must be 1 to 1000, got {limit}")
    try:
        with translated():
            await known_queue(app, queue)
            return await query.raw_events(app, after, limit, block, queue)
    except ValueError as exc:
        raise BadRequest("after", str(exc)) from None


async def health(app: BaseQueueTasks) -> Health:
    """Broker reachable and workers alive; never raises (a probe asks yes or no)."""
    try:
        with translated():
            await app.broker.ping()
    except Exception as exc:  # noqa: BLE001 - unreachable: the reason, no traceback
        return Health(ok=False, broker=False, workers=0, reason=str(exc))
    try:
        with translated():
            live = len(await query.workers(app, include_lost=False))
    except Exception as exc:  # noqa: BLE001
        return Health(ok=False, broker=True, workers=0, reason=str(exc))
    return Health(ok=live > 0, broker=True, workers=live, reason="" if live else "no live worker")


async def throughput(app: BaseQueueTasks, minutes: int = 15, queue: str | None = None) -> list[Any]:
    """Tasks finished per minute over the last ``minutes`` (1..10080), per status, oldest first."""
    from qtasks_fast.querylib import MAX_MINUTES

    if not 1 <= minutes <= MAX_MINUTES:
        raise BadRequest("minutes", f"minutes must be 1 to {MAX_MINUTES}, got {minutes}")
    with translated():
        await known_queue(app, queue)
        return await query.throughput(app, minutes, queue)
