"""Bulk actions over a filter (cancel, restart, requeue), capped and confirmed by count.

Two calls: ``dry_run=True`` answers how many tasks the action would touch (at most ``cap``) so a surface can ask
"cancel 412 tasks?"; the real call passes that number as ``confirm`` and touches at most that many (and at most
``cap``), newest first, so a filter that matches more by then never acts on tasks the operator did not see
counted. The result says what it did per outcome.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast import control, query
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.service.audit import record
from qtasks_fast.service.errors import BadRequest
from qtasks_fast.service.guard import Caller, translated

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
    #: what was done: outcome -> tasks (cancel: queued/running/finished/unknown; restart: restarted;
    #: requeue: requeued/not_dead)
    done: dict[str, int] = {}


async def _matching(app: BaseQueueTasks, filter: TaskFilter, limit: int) -> tuple[list[tuple[str, str]], bool]:
    """(uuid, queue) of the newest ``limit`` tasks matching, and whether more match."""
    found: list[tuple[str, str]] = []
    cursor: str | None = None
    while len(found) <= limit:
        page = await query.list_tasks(app, filter, min(query.MAX_PAGE, limit + 1 - len(found)), cursor)
        found += [(t.uuid, t.queue) for t in page.tasks]
        cursor = page.cursor
        if cursor is None:
            break
    return found[:limit], len(found) > limit


async def bulk(app: BaseQueueTasks, caller: Caller, action: str, filter: TaskFilter, *, cap: int = 1000,
               confirm: int | None = None, dry_run: bool = False) -> BulkResult:
    """Count (``dry_run``) or do ``action`` on the tasks matching ``filter``; see the module docstring."""
    if action not in ACTIONS:
        raise BadRequest("action", f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if not 1 <= cap <= MAX_CAP:
        raise BadRequest("cap", f"cap must be 1 to {MAX_CAP}, got {cap}")
    if not dry_run:
        caller.check_writable(f"bulk {action}")
        if confirm is None or confirm < 0:
            raise BadRequest("confirm", "pass confirm: the count a dry run (dry_run=true) returned")
    limit = cap if dry_run else min(cap, confirm or 0)
    with translated():
        found, more = await _matching(app, filter, limit) if limit else ([], False)
    if dry_run:
        return BulkResult(action=action, matched=len(found), capped=more, dry_run=True)
    done: Counter[str] = Counter()
    with translated():
        if action == "cancel":
            for uuid, _ in found:
                done[await control.cancel(app, uuid, f"bulk cancel by {caller.who}")] += 1
        elif action == "restart":
            for uuid, _ in found:
                await control.restart(app, uuid)
                done["restarted"] += 1
        else:
            done.update(await _requeue(app, found))
    await record(app, caller, f"bulk-{action}", msgspec.json.encode(filter).decode(),
                 ", ".join(f"{k} {v}" for k, v in sorted(done.items())) or "none")
    return BulkResult(action=action, matched=len(found), capped=more, dry_run=False, done=dict(done))


async def _requeue(app: BaseQueueTasks, found: list[tuple[str, str]]) -> Counter[str]:
    """Requeue the dead letters of the found tasks (those not dead-lettered are counted ``not_dead``)."""
    by_queue: dict[str, set[str]] = {}
    for uuid, q in found:
        by_queue.setdefault(q, set()).add(uuid)
    done: Counter[str] = Counter()
    for q, uuids in by_queue.items():
        ids = [d.id for d in await control.dlq_list(app, q, 1000) if d.uuid in uuids]
        n = await control.dlq_requeue(app, q, ids) if ids else 0
        done["requeued"] += n
        done["not_dead"] += len(uuids) - n
    return +done
