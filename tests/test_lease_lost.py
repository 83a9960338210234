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
from pathlib import Path
from typing import Any

import pytest

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery
from qtasks_fast.testing import WorkerThread

LEASE = 1.0


@pytest.fixture(params=["redis", "sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/q.sqlite3"
    return "memory://"


async def steal(app: Any, handlers: dict[str, Any], count: int) -> list[Delivery]:
    """Another consumer reclaims ``count`` expired deliveries and settles them with the result "thief"."""
    broker, storage = app._resolve()
    broker = copy.copy(broker)
    await broker.start("thief-0", "thief-0", ["default"], storage)
    got: list[Delivery] = []
    bad: list[Any] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        for queue, flat in await broker.fetch(count - len(got), 0.2):
            core.decode_batch(queue, flat, handlers, 1 << 20, got, bad)
    assert not bad
    await broker.settle([(d, "success", core.encode("thief"), "", "") for d in got], storage, [])
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


@pytest.mark.parametrize("url", ["memory"], indirect=True)  # where a last attempt comes with its batch-mates
def test_a_last_attempt_held_back_is_not_run_once_its_lease_is_lost(url: str, app_name: str) -> None:
    config = GlobalConfig(lease_seconds=LEASE, max_deliveries=3)
    app = QueueTasks(app_name, broker_url=url, config=config)
    runs: list[str] = []
    frozen, thaw = threading.Event(), threading.Event()

    @app.task
    async def freeze(tag: str) -> str:
        runs.append(tag)
        frozen.set()
        thaw.wait(60)  # blocks the worker's loop while the last attempt waits to run alone
        return "worker"

    @app.task
    async def work(tag: str) -> str:
        runs.append(tag)
        return "worker"

    last = app.add_task(work.s("last-attempt"))

    async def ghost() -> None:  # two deliveries to a consumer that dies: the next one is the last
        broker, storage = app._resolve()
        broker = copy.copy(broker)
        await broker.start("ghost-0", "ghost-0", ["default"], storage)
        for _ in range(2):
            assert await broker.fetch(1, 5.0)
            await asyncio.sleep(LEASE * 1.2)

    asyncio.run(ghost())
    first = app.add_task(freeze.s("frozen"))
    thief = app if url == "memory://" else QueueTasks(app_name, broker_url=url, config=config)
    with WorkerThread(app, concurrency=2):
        assert frozen.wait(20), "the worker did not start the first task"
        # the thief's fetch takes the frozen task and dead-letters the last attempt (no delivery left)
        stolen = asyncio.run(steal(thief, app.tasks, 1))
        thaw.set()
        assert app.wait(first.uuid, 20) is not None
        deadline = time.monotonic() + 3 * LEASE
        while time.monotonic() < deadline and len(runs) < 2:
            time.sleep(0.05)
    assert [d.envelope.uuid for d in stolen] == [str(first.uuid)]  # type: ignore[union-attr]
    assert runs == ["frozen"], f"the thawed worker ran a last attempt it no longer held: {runs}"
    assert app.get(last.uuid).status == "error"  # type: ignore[union-attr]  # dead-lettered by the thief
