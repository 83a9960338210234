"""Leases: a running task is renewed while its worker lives, and reclaimed when it stops."""

from __future__ import annotations

import asyncio
import threading
import time

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.testing import WorkerThread


def test_a_task_longer_than_the_lease_runs_once(redis_url: str, app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(lease_seconds=0.6))
    runs: list[str] = []
    lock = threading.Lock()

    @app.task
    async def long(tag: str) -> str:
        with lock:
            runs.append(tag)
        await asyncio.sleep(2.5)  # four leases long: only renewal keeps it from being taken over
        return tag

    with WorkerThread(app, slot=0), WorkerThread(app, slot=1):
        tasks = app.add_tasks([long.s(str(i)) for i in range(4)])
        done = [app.wait(t.uuid, 20) for t in tasks]
    assert [d.returning for d in done] == ["0", "1", "2", "3"]  # type: ignore[union-attr]
    assert sorted(runs) == ["0", "1", "2", "3"], f"a renewed task ran again: {runs}"


def test_messages_of_a_dead_consumer_are_reclaimed_after_the_lease(redis_url: str, app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(lease_seconds=1.0))

    @app.task
    def echo(x: int) -> int:
        return x

    tasks = app.add_tasks([echo.s(i) for i in range(5)])

    async def ghost() -> int:
        # a consumer that takes the messages and dies without a word
        ghost_app = QueueTasks(app_name, broker_url=redis_url, config=GlobalConfig(lease_seconds=1.0))
        broker, storage = ghost_app._resolve()
        await broker.start("ghost-0", "ghost-0", ["default"], storage)
        got = await broker.fetch(10, 0)
        await broker.close()
        return sum(len(flat) // 4 for _, flat in got)

    assert asyncio.run(ghost()) == 5
    assert app.get(tasks[0].uuid).status == "process"  # type: ignore[union-attr]
    started = time.monotonic()
    with WorkerThread(app, worker_id="heir"):
        done = [app.wait(t.uuid, 20) for t in tasks]
    took = time.monotonic() - started
    assert [d.returning for d in done] == [0, 1, 2, 3, 4]  # type: ignore[union-attr]
    assert {d.worker_id for d in done} == {"heir-0"}  # type: ignore[union-attr]
    assert 0.5 < took < 10, f"reclaimed after {took:.1f}s, lease is 1s"
