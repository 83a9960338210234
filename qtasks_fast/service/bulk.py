"""Bulk actions over a filter (cancel, restart, requeue), capped and confirmed by count.

Two calls: ``dry_run=True`` answers how many tasks the action would touch (at most ``cap``) and which (their
uuids: the snapshot) so a surface can ask "cancel 412 tasks?"; the real call passes that number as ``confirm`` and
the snapshot as ``uuids``, and touches only the snapshot's tasks that the filter still matches: a task that arrived
(or came to match) after the count is never touched, since the operator did not see it counted. The result says
what it did per outcome.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast import control, query
from qtasks_fast.abc.query import TaskFilter, TaskSummary
from qtasks_fast.components import client_ops
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest
from qtasks_fast.service.guard import Caller, known_queue, translated
from qtasks_fast.steps import run

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

ACTIONS = ("cancel", "restart", "requeue")
#: the most tasks one bulk action may touch
MAX_CAP = 10_000


class BulkResult(msgspec.Struct, kw_only=True):
    action: str
    #: tasks the filter matched, up to the cap (a dry run's count: pass it back as ``confirm``)
    matched: int
    #: True when the filter matches more than ``cap``: only the newest ``cap`` are touched
    capped: bool
    dry_run: bool
    #: the counted tasks (a dry run's snapshot): pass them back as ``uuids`` with ``confirm``
    uuids: list[str] = []
    #: what was done: outcome -> tasks (cancel: queued/running/finished/unknown; restart: restarted;
    #: requeue: requeued/not_dead)
    done: dict[str, int] = {}


async def _matching(app: BaseQueueTasks, filter: TaskFilter, limit: int) -> tuple[list[TaskSummary], bool]:
    """The newest ``limit`` tasks matching, and whether more match."""
    found: list[TaskSummary] = []
    cursor: str | None = None
    while len(found) <= limit:
        page = await query.list_tasks(app, filter, min(query.MAX_PAGE, limit + 1 - len(found)), cursor)
        found += page.tasks
        cursor = page.cursor
        if cursor is None:
            break
    return found[:limit], len(found) > limit


def _checked_snapshot(uuids: list[str] | None, confirm: int | None, cap: int) -> list[str]:
    """The snapshot's uuids to act on: the first ``confirm`` (and at most ``cap``) of them, as the dry run listed
    them (newest first)."""
    if confirm is None or confirm < 0:
        raise BadRequest("confirm", "pass confirm: the count a dry run (dry_run=true) returned")
    if uuids is None:
        raise BadRequest("uuids", "pass uuids: the tasks a dry run (dry_run=true) counted, so that only they are "
                                  "touched")
    with translated("uuids"):
        return list(dict.fromkeys(control.checked_uuid(u) for u in uuids))[:min(confirm, cap)]


async def _still_matching(app: BaseQueueTasks, filter: TaskFilter, uuids: list[str]) -> list[TaskSummary]:
    """The snapshot's tasks that ``filter`` still matches: its matches between the creation of the first and the
    last uuid of the snapshot (newest and oldest counted: a dry run lists them newest first), kept when counted."""
    ends = [t for u in {uuids[0], uuids[-1]} if (t := await run(client_ops.getting(app, u))) is not None]
    if not ends:
        return []
    times = [t.created_at.timestamp() for t in ends]
    window = msgspec.structs.replace(
        filter, created_after=max(filter.created_after or 0.0, min(times) - 0.001),
        created_before=min(filter.created_before or math.inf, max(times) + 0.001))
    found, _ = await _matching(app, window, 2 * MAX_CAP)
    snapshot = set(uuids)
    return [t for t in found if t.uuid in snapshot]


async def bulk(app: BaseQueueTasks, caller: Caller, action: str, filter: TaskFilter, *, cap: int = 1000,
               confirm: int | None = None, uuids: list[str] | None = None, dry_run: bool = False) -> BulkResult:
    """Count (``dry_run``) or do ``action`` on the tasks matching ``filter``; see the module docstring."""
    if action not in ACTIONS:
        raise BadRequest("action", f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not 1 <= cap <= MAX_CAP:
        raise BadRequest("cap", f"cap must be 1 to {MAX_CAP}, got {cap}")
    with translated():
        await known_queue(app, filter.queue)
    if dry_run:
        with translated():
            counted, more = await _matching(app, filter, cap)
        return BulkResult(action=action, matched=len(counted), capped=more, dry_run=True,
                          uuids=[t.uuid for t in counted])
    caller.check_writable(f"bulk {action}")
    snapshot = _checked_snapshot(uuids, confirm, cap)
    with translated():
        found = await _still_matching(app, filter, snapshot) if snapshot else []
    done: Counter[str] = Counter()
    with translated():
        if action == "cancel":
            for t in found:
                done[await control.cancel(app, t.uuid, f"bulk cancel by {caller.who}")] += 1
        elif action == "restart":
            for t in found:
                await control.restart(app, t.uuid)
                done["restarted"] += 1
        else:
            done.update(await _requeue(app, found))
    await record(app, caller, f"bulk-{action}", msgspec.json.encode(filter).decode(),
                 ", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "none")
    return BulkResult(action=action, matched=len(found), capped=False, dry_run=False, done=dict(done),
                      uuids=[t.uuid for t in found])


async def _requeue(app: BaseQueueTasks, found: list[TaskSummary]) -> Counter[str]:
    """Requeue the dead letters of the found tasks (those not dead-lettered are counted ``not_dead``)."""
    by_queue: dict[str, set[str]] = {}
    for t in found:
        by_queue.setdefault(t.queue, set()).add(t.uuid)
    done: Counter[str] = Counter()
    for q, uuids in by_queue.items():
        ids = await _dead_ids(app, q, uuids)
        n = await control.dlq_requeue(app, q, ids) if ids else 0
        done["requeued"] += n
        done["not_dead"] += len(uuids) - n
    return +done


async def _dead_ids(app: BaseQueueTasks, queue: str, uuids: set[str]) -> list[str]:
    """The ids of ``queue``'s dead letters of ``uuids``, wherever they are among its dead letters: the listing
    (newest first, no cursor) grows until it holds them all or every dead letter of the queue."""
    count = max(1000, 2 * len(uuids))
    while True:
        listed = await control.dlq_list(app, queue, count)
        ids = [d.id for d in listed if d.uuid in uuids]
        if len(ids) >= len(uuids) or len(listed) < count:
            return ids
        count *= 4
