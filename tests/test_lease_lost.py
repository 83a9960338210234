"""Lost leases: a worker frozen past its lease does not run, or settle, what another worker took over.

The freeze is a task body that blocks the worker's event loop (as SIGSTOP would: no renewal is
sent), long enough for a second consumer to reclaim every message the worker held — the running
one and its prefetched backlog — and to settle them. When the loop thaws, the worker must learn
from the broker's renewal reply that those deliveries are no longer its own.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from qtasks_fast import GlobalConfig, QueueTasks, testing
from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery
from qtasks_fast.schemas import Task
from qtasks_fast.testing import WorkerThread
from qtasks_fast.worker.worker import Worker

LEASE = 1.0


async def consumer(app: Any, name: str) -> Any:
    """A started copy of ``app``'s broker consuming the default queue as ``name``."""
    broker, storage = app._resolve()
    broker = copy.copy(broker)
    await broker.start(name, name, ["default"], storage)
    return broker


async def steal(app: Any, handlers: dict[str, Any], count: int,
                until: Callable[[], Awaitable[bool]] | None = None) -> list[Delivery]:
    """Another consumer reclaims ``count`` expired deliveries and settles them with the result "thief";
    with ``until``, it goes on fetching (dead-lettering what has no delivery left) until that holds."""
    broker = await consumer(app, "thief-0")
    got: list[Delivery] = []
    bad: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (len(got) < count or until is not None and not await until()):
        for queue, flat in await broker.fetch(max(count - len(got), 1), 0.2):
            core.decode_batch(queue, flat, handlers, 1 << 20, got, bad)
    assert not bad
    await broker.settle([(d, "success", core.encode("thief"), "", "") for d in got], app._resolve()[1], [])
    if app._resolve()[0] is not broker:
        await broker.close()
    return got


def test_a_frozen_worker_drops_what_another_worker_took_over(url: str, app_name: str) -> None:
    config = GlobalConfig(lease_seconds=LEASE, prefetch=3)
    app = QueueTasks(app_name, broker_url=url, config=config)
    runs: list[str] = []
    frozen, thaw = threading.Event(), threading.Event()

    @app.task
    async def freeze(tag: str) -> str:
        runs.append(tag)
        frozen.set()
        thaw.wait(60)  # blocks the worker's event loop: no lease renewal goes out, as under SIGSTOP
        return "worker"

    @app.task
    async def work(tag: str) -> str:
        runs.append(tag)
        return "worker"

    tasks = app.add_tasks([freeze.s("frozen"), *(work.s(f"prefetched-{i}") for i in range(3))])
    # a separate app (own connections) steals, except on memory://, where the state lives in this app
    thief = app if url == "memory://" else QueueTasks(app_name, broker_url=url, config=config)
    worker = WorkerThread(app, concurrency=1)
    with worker:
        assert frozen.wait(20), "the worker did not start the first task"
        stolen = asyncio.run(steal(thief, app.tasks, 4))  # every lease ran out meanwhile: all four change hands
        thaw.set()
        for t in tasks:  # the thief's outcomes are final; give the thawed worker time to act on them
            assert app.wait(t.uuid, 20) is not None
        deadline = time.monotonic() + 3 * LEASE
        while time.monotonic() < deadline and len(runs) < 4:
            time.sleep(0.05)
    assert len(stolen) == 4
    assert runs == ["frozen"], f"the thawed worker ran tasks another worker held: {runs}"
    results = [app.get(t.uuid) for t in tasks]
    assert [(r.status, r.returning, r.worker_id) for r in results] == [  # type: ignore[union-attr]
        ("success", "thief", "thief-0")] * 4, "the thawed worker stored its outcome over the new owner's"


@pytest.mark.asyncio
async def test_redis_renew_and_release_leave_a_taken_over_message_to_its_new_owner(redis_url: str,
                                                                                     app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(lease_seconds=0.3))

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    await asyncio.to_thread(app.add_task, add.s(1, 2))
    brokers = []
    for name in ("owner-0", "thief-0", "third-0"):
        b, storage = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(lease_seconds=0.3))._resolve()
        await b.start(name, name, ["default"], storage)
        brokers.append(b)
    owner, thief, third = brokers
    bad: list[Any] = []
    (d,) = [x for q, flat in await owner.fetch(10, 1.0) for x in _decoded(q, flat, app.tasks, bad)]
    assert await owner.renew([d]) == [d]  # held: renewed and reported
    await asyncio.sleep(0.5)  # the lease runs out
    (taken,) = [x for q, flat in await thief.fetch(10, 1.0) for x in _decoded(q, flat, app.tasks, bad)]
    assert taken.msg_id == d.msg_id
    assert list(await owner.renew([d])) == []  # lost: the owner learns it
    await owner.release([d])  # a drain of the old owner must not hand back (copy) what runs elsewhere
    assert await third.fetch(10, 0.5) == []
    assert list(await thief.renew([taken])) == [taken]  # still the thief's
    for b in brokers:
        await b.close()


def _decoded(queue: str, flat: list[Any], handlers: dict[str, Any], bad: list[Any]) -> list[Delivery]:
    out: list[Delivery] = []
    core.decode_batch(queue, flat, handlers, 1 << 20, out, bad)
    return out


def test_a_last_attempt_held_back_is_not_run_once_its_lease_is_lost(url: str, app_name: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A last attempt fetched while another task runs is held back (fetcher.run_alone: it runs with nothing
    else in flight). The worker then freezes past its lease and another consumer takes both messages over;
    thawed, the worker learns from its renewal that it lost the attempt it held back, and never runs it."""
    config = GlobalConfig(lease_seconds=LEASE, max_deliveries=3)
    app = QueueTasks(app_name, broker_url=url, config=config)
    workers: list[Worker] = []

    class Seen(Worker):  # the WorkerThread's worker, to watch its fetcher hold the last attempt back
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            workers.append(self)

    monkeypatch.setattr(testing, "Worker", Seen)
    runs: list[str] = []
    started, frozen, thaw = threading.Event(), threading.Event(), threading.Event()
    held_back: list[bool] = []

    @app.task
    async def freeze(tag: str) -> str:
        runs.append(tag)
        started.set()
        deadline = time.monotonic() + 30
        while not holds_back(workers[0], last) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the loop goes on: the fetcher takes the last attempt and holds it back
        held_back.append(holds_back(workers[0], last))
        frozen.set()
        thaw.wait(60)  # now blocks the worker's loop, as SIGSTOP would: no renewal goes out
        return "worker"

    @app.task
    async def work(tag: str) -> str:
        runs.append(tag)
        return "worker"

    last = uuid_of(app.add_task(work.s("last-attempt")))

    def other() -> Any:  # another consumer's app: its own connections, except on memory://, where the state is app's
        return app if url == "memory://" else QueueTasks(app_name, broker_url=url, config=config)

    async def scenario() -> tuple[list[Delivery], str, Task, str]:
        bad: list[Any] = []
        ghosts: list[Any] = []
        for n in (1, 2):  # two deliveries to consumers whose lease runs out each time: the next one is the last
            # another consumer each time: a consumer's own fetch never takes back what it still holds (the
            # Broker contract), only a replacement of its name or another consumer after its lease
            ghost = await consumer(other(), f"ghost{n}-0")
            ghosts.append(ghost)
            got: list[Delivery] = []
            deadline = time.monotonic() + 30
            while not got and time.monotonic() < deadline:
                got = [d for q, flat in await ghost.fetch(1, 0.2) for d in _decoded(q, flat, app.tasks, bad)]
            assert [d.deliveries for d in got] == [n] and not bad
        # The ghost holds its lease until the worker has started the frozen task: a fetch hands a last attempt
        # out alone, and first when it is claimable (SQLite, memory), so the worker would run it before
        # anything else. (Redis parks it and hands it out in a fetch after the new message anyway.)
        ghost.lease_seconds = 60.0
        await ghost.renew(got)
        first = uuid_of(await asyncio.to_thread(app.add_task, freeze.s("frozen")))
        with WorkerThread(app, concurrency=2):
            try:
                assert await asyncio.to_thread(started.wait, 20), "the worker did not start the first task"
                ghost.lease_seconds = LEASE  # the ghost dies: its lease runs out, the worker's fetcher reclaims
                await ghost.renew(got)  # the last attempt, and holds it back while the frozen task runs
                assert await asyncio.to_thread(frozen.wait, 40), "the first task did not block the loop"
                assert held_back == [True], "the worker did not hold the last attempt back"

                async def dead_lettered() -> bool:
                    rec = await asyncio.to_thread(app.get, last)
                    return rec is not None and rec.status == "error"

                # the thief takes the frozen task over and dead-letters the last attempt (no delivery left)
                stolen = await steal(other(), app.tasks, 1, until=dead_lettered)
                left = await asyncio.to_thread(app.get, last)
                assert left is not None and left.status == "error"  # dead-lettered by the thief
                # run by the thawed worker only once its fetcher is past the held-back attempt
                after = uuid_of(await asyncio.to_thread(app.add_task, work.s("after")))
            finally:
                thaw.set()
            assert await asyncio.to_thread(app.wait, after, 20) is not None
        for ghost in ghosts:
            await ghost.close()
        return stolen, first, left, after

    stolen, first, left, after = asyncio.run(scenario())
    assert [d.envelope.uuid if d.envelope else None for d in stolen] == [first]
    assert runs == ["frozen", "after"], f"the thawed worker ran a last attempt it no longer held: {runs}"
    outcomes = {u: app.get(u) for u in (last, first, after)}
    assert {u: (t.status, t.returning, t.traceback, t.worker_id) if t else None for u, t in outcomes.items()} == {
        last: (left.status, left.returning, left.traceback, left.worker_id),  # as the thief left it
        first: ("success", "thief", None, "thief-0"),
        after: ("success", "worker", None, "test-0"),
    }, "the thawed worker stored an outcome over the new owner's"


def uuid_of(task: Task | None) -> str:
    assert task is not None
    return str(task.uuid)


def holds_back(w: Worker, uuid: str) -> bool:
    """The fetcher holds the delivery of ``uuid`` back (``run_alone``): fetched, neither started nor queued to."""
    return any(d.envelope is not None and d.envelope.uuid == uuid and not d.started and d not in w.backlog
               for d in w.inflight)
