"""QTasks' ``qtasks.results`` and ``qtasks.stats`` under qtasks_fast: what QTasks code calls, as it calls it."""

from __future__ import annotations

import json

import pytest

import qtasks_fast
from qtasks_fast import QueueTasks, TaskNotFound
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.results import AsyncResult, SyncResult
from qtasks_fast.stats import AsyncStats, SyncStats
from qtasks_fast.testing import WorkerThread


def flaky_app(app_name: str, cls: type = QueueTasks) -> tuple[QueueTasks, list[int]]:
    """An app whose task ``flaky`` fails on its first two attempts and returns its attempt number on the third."""
    app = cls(app_name, broker_url="memory://")
    calls: list[int] = []

    @app.task(retry=3, retry_on_exc=[ValueError], retry_backoff=0)
    def flaky(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise ValueError("not yet")
        return x * 10 + len(calls)

    return app, calls


def test_sync_result_follows_retries_to_the_final_record(app_name: str) -> None:
    app, calls = flaky_app(app_name)
    with WorkerThread(app):
        task = app.add_task("flaky", 4)
        assert task is not None
        done = SyncResult(uuid=task.uuid, app=app).result(timeout=20)
    assert done is not None and done.status == "success" and done.returning == 43
    assert done.uuid != task.uuid and done.retry_parent_uuid is not None  # the third attempt's record
    assert calls == [4, 4, 4]
    # retries left: 3 on the first attempt, 1 on the third; a task without retries has None, as in QTasks
    assert (task.retry, done.retry) == (3, 1)


def test_a_task_without_retries_has_retry_none_and_a_last_retry_zero(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def plain() -> int:
        return 1

    @app.task(retry=1, retry_on_exc=[ValueError], retry_backoff=0)
    def fails() -> None:
        raise ValueError("always")

    with WorkerThread(app):
        sent, done = plain.add_task(), app.add_task("plain", timeout=20)
        first = app.add_task("fails")
        last = SyncResult(uuid=first.uuid, app=app).result(timeout=20)
    assert sent is not None and sent.retry is None and done is not None and done.retry is None  # QTasks: None
    assert first.retry == 1 and last is not None and last.status == "error" and last.retry == 0


def test_sync_result_uses_the_main_app_and_gives_none_on_timeout(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def never() -> None: ...

    task = never.add_task()
    assert task is not None
    assert SyncResult(uuid=task.uuid).result(timeout=0.3) is None  # no worker: not final
    with pytest.raises(ValueError, match="uuid"):
        SyncResult(app=app).result(timeout=1)


async def test_async_result_with_either_client(app_name: str) -> None:
    app, _ = flaky_app(app_name, AsyncQueueTasks)
    with WorkerThread(app):
        task = await app.add_task("flaky", 2)
        assert task is not None
        done = await AsyncResult(uuid=task.uuid, app=app).result(timeout=20)
        assert done is not None and done.returning == 23
        sync_app = QueueTasks(app_name, broker_url="memory://")
        sync_app._broker, sync_app._storage = app._broker, app._storage  # the same in-process backend
        again = await AsyncResult(uuid=task.uuid, app=sync_app).result(timeout=20)
        assert again is not None and again.uuid == done.uuid
        assert SyncResult(uuid=str(task.uuid), app=app).result(timeout=20) is not None  # async app, sync waiter


def test_stats_inspect_reports_app_tasks_and_queue_counts(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://", version="2.1")

    @app.task(retry=2, tags=["io"], description="adds")
    def add(a: int, b: int = 3, *, scale: float = 1.0) -> int:
        return a + b

    @app.task(queue="other")
    async def other() -> None: ...

    add.add_task(1)
    add.add_task(2)
    stats = SyncStats(app).inspect()
    text = stats.app()
    assert f"{'Name':<26}: {app_name}" in text and "Tasks Count" in text and "2.1" in text
    data = json.loads(stats.app(json=True))
    assert data["Tasks Count"] == 2 and data["Method"] == "sync"
    # QTasks' keys in QTasks' order (a dashboard parsing QTasks' JSON finds each), then ours
    assert list(data)[:14] == ["Name", "Method", "Version", "Config", "Tasks Count", "Routers Count", "Plugins Count",
                               "Broker", "Worker", "Starter", "Storage", "GlobalConfig", "Log", "Init Count"]
    assert data["Worker"] == "SyncThreadWorker" and data["GlobalConfig"] == "—" and data["Log"] == "Logger"
    assert data["Version"] == "2.1"  # the app's version=; without one ours (below), never null
    assert data["Queue Stats"]["default"]["waiting"] == 2 and data["Queue Stats"]["other"]["waiting"] == 0
    one = stats.task("add")
    assert "Args                      : a: int" in one and "b: int=3" in one and "scale: float=1.0" in one
    assert "Retry Count               : 2" in one and "io" in one
    listed = json.loads(stats.tasks(json=True))
    assert [t["name"] for t in listed] == ["add", "other"] and listed[1]["kind"] == "async"
    assert list(listed[0])[:17] == ["priority", "name", "func", "awaiting", "generating", "echo", "max_time", "retry",
                                    "retry_on_exc", "decode", "tags", "description", "generate_handler", "executor",
                                    "middlewares_before", "middlewares_after", "extra"]
    assert (listed[0]["awaiting"], listed[1]["awaiting"], listed[0]["generating"]) == (False, True, False)
    assert listed[0]["func"].endswith(".add") and listed[0]["extra"] == {} and listed[0]["retry"] == 2
    assert [t["name"] for t in json.loads(stats.tasks("other", json=True))] == ["other"]
    with pytest.raises(TaskNotFound, match="registered"):
        stats.task("ad")


async def test_async_stats_inspect(app_name: str) -> None:
    app = AsyncQueueTasks(app_name, broker_url="memory://")

    @app.task
    async def ping() -> str:
        return "pong"

    await app.add_task("ping")
    stats = await AsyncStats(app).inspect()
    data = json.loads(stats.app(json=True))
    assert data["Method"] == "async" and data["Queue Stats"]["default"]["waiting"] == 1 and data["Workers"] == []
    assert data["Version"] == qtasks_fast.__version__ and data["Worker"] == "AsyncWorker"
