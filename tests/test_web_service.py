"""The service layer (qtasks_fast.service) where its behaviour rests on the backend: bulk actions count and act
on the same tasks, dead letters are found and requeued, and the audit log is shared by every client of the app
(two processes' dashboards read the same log), on memory, SQLite and Redis."""

from __future__ import annotations

import asyncio

import pytest
from apps.web_app import build

from qtasks_fast import QueueTasks, control, service
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.testing import WorkerThread
from qtasks_fast.testing.contract.harness import envelope

ME = service.Caller(who="test")


@pytest.fixture
def app(url: str, app_name: str) -> QueueTasks:
    return build(app_name, url)


async def test_bulk_cancel_counts_caps_and_touches_the_counted_tasks(app: QueueTasks) -> None:
    made = [await service.submit(app, ME, "sleeper", [5]) for _ in range(4)]
    flt = TaskFilter(task_name="sleeper")
    assert (await service.bulk(app, ME, "cancel", flt, cap=3, dry_run=True)).matched == 3
    dry = await service.bulk(app, ME, "cancel", flt, dry_run=True)
    assert (dry.matched, dry.capped) == (4, False)
    done = await service.bulk(app, ME, "cancel", flt, confirm=dry.matched, uuids=dry.uuids)
    assert done.done == {"queued": 4}
    assert (await service.count_tasks(app, flt))["cancel"] == 4
    assert {str(t.uuid) for t in made} == {t.uuid for t in (await service.list_tasks(app, flt)).tasks}
    with pytest.raises(service.ReadOnly):
        await service.bulk(app, service.Caller(who="ro", read_only=True), "cancel", flt, confirm=1,
                           uuids=dry.uuids[:1])


async def test_a_confirmed_bulk_action_touches_only_the_tasks_it_counted(app: QueueTasks) -> None:
    """Tasks that arrive between the count and the confirmation are not touched, and every counted one is
    (the review's probe: 3 counted, 2 more submitted, confirm 3 cancelled 1 counted and the 2 new ones)."""
    counted = [str((await service.submit(app, ME, "sleeper", [5], countdown=600)).uuid) for _ in range(3)]
    flt = TaskFilter(task_name="sleeper", status="new")
    dry = await service.bulk(app, ME, "cancel", flt, dry_run=True)
    assert sorted(dry.uuids) == sorted(counted)
    late = [str((await service.submit(app, ME, "sleeper", [5], countdown=600)).uuid) for _ in range(2)]
    done = await service.bulk(app, ME, "cancel", flt, confirm=dry.matched, uuids=dry.uuids)
    assert done.done == {"queued": 3} and sorted(done.uuids) == sorted(counted)
    assert [(await service.get(app, u)).status for u in counted + late] == ["cancel"] * 3 + ["new"] * 2
    with pytest.raises(service.BadRequest) as refused:  # no snapshot: the count alone cannot say which tasks
        await service.bulk(app, ME, "cancel", flt, confirm=2)
    assert refused.value.field == "uuids"


async def test_bulk_requeue_finds_dead_letters_beyond_the_newest_thousand(app: QueueTasks) -> None:
    await app.broker.enqueue([envelope("ghost") for _ in range(1101)], app.storage)
    with WorkerThread(app):
        for _ in range(600):
            if len(await control.dlq_list(app, None, 2000)) == 1101:
                break
            await asyncio.sleep(0.05)
    flt = TaskFilter(task_name="ghost")
    dry = await service.bulk(app, ME, "requeue", flt, cap=2000, dry_run=True)
    assert dry.matched == 1101
    done = await service.bulk(app, ME, "requeue", flt, cap=2000, confirm=1101, uuids=dry.uuids)
    assert done.done == {"requeued": 1101}


async def test_bulk_requeue_puts_the_filtered_dead_letters_back(app: QueueTasks) -> None:
    ghosts = [envelope("ghost"), envelope("ghost")]
    await app.broker.enqueue(ghosts, app.storage)
    with WorkerThread(app):
        for _ in range(200):
            if len(await service.dead_letters(app)) == 2:
                break
            await asyncio.sleep(0.05)
    flt = TaskFilter(task_name="ghost")
    dry = await service.bulk(app, ME, "requeue", flt, dry_run=True)
    assert dry.matched == 2
    done = await service.bulk(app, ME, "requeue", flt, confirm=2, uuids=dry.uuids)
    assert done.done == {"requeued": 2}
    assert await service.dead_letters(app) == []
    assert (await service.count_tasks(app, flt))["new"] == 2


async def test_the_audit_log_is_shared_by_every_client_of_the_app(app: QueueTasks, url: str) -> None:
    task = await service.submit(app, service.Caller(who="alice"), "add", [1, 2])
    await service.cancel(app, service.Caller(who="bob"), str(task.uuid), "changed my mind")
    if url.startswith("memory"):
        other = app  # one process' memory: the same backend object is the only other client there is
    else:
        other = build(app.name, url)  # another client (a second web server of the fleet)
    entries = await service.audit_entries(other, 10)
    assert [(e.who, e.action, e.target, e.outcome) for e in entries] == [
        ("bob", "cancel", str(task.uuid), "queued"), ("alice", "submit", "add", f"uuid {task.uuid}")]
    assert entries[0].at >= entries[1].at
