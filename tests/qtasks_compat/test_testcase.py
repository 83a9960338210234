"""``SyncTestCase``/``AsyncTestCase`` with the other ``TestConfig`` shapes, in this process (issue 11, item 1):
a disabled broker is an in-process backend (the app's own broker is never reached and comes back at
``stop()``), a disabled worker cannot be started, ``plugins=False`` silences the app's plugins until ``stop()``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.enums.task_status import TaskStatusEnum
from qtasks_fast.schemas.test import TestConfig
from qtasks_fast.tests import AsyncTestCase, SyncTestCase

#: nothing listens there: a case that reached the app's own broker would fail
UNREACHABLE = "redis://127.0.0.1:9/0"


class Seen(BasePlugin):
    def __init__(self) -> None:
        super().__init__(name="seen")
        self.calls: list[str] = []

    def trigger(self, name: str, **kwargs: Any) -> None:
        self.calls.append(name)


def make_app(cls: type[Any]) -> Any:
    app = cls("case-app", broker_url=UNREACHABLE)

    @app.task(name="square")
    def square(n: int) -> int:
        return n * n

    return app


@pytest.mark.parametrize("config", [TestConfig.only_worker(), TestConfig(worker=True, storage=True),
                                    TestConfig.only_worker(plugins=True)])
def test_without_the_broker_tasks_run_in_process(config: TestConfig) -> None:
    app = make_app(QueueTasks)
    own = app.broker
    case = SyncTestCase(app=app)
    case.settings(config)
    case.start_in_background(num_workers=2)
    try:
        for n in (3, 11):
            done = case.add_task("square", n, timeout=30)
            assert done is not None and done.status == TaskStatusEnum.SUCCESS.value and done.returning == n * n
            assert case.get(done.uuid) is not None
    finally:
        case.stop()
    assert app.broker is own and app.broker_url == UNREACHABLE


def test_plugins_false_silences_the_apps_plugins_until_stop() -> None:
    app = make_app(QueueTasks)
    seen = Seen()
    app.add_plugin(seen, ["task_before_execute"])
    case = SyncTestCase(app=app)
    case.settings(TestConfig.only_worker(plugins=False))
    case.start_in_background()
    try:
        assert case.add_task("square", 2, timeout=30) is not None
        assert seen.calls == []
    finally:
        case.stop()
    case.settings(TestConfig.only_worker(plugins=True))
    case.start_in_background()
    try:
        assert case.add_task("square", 2, timeout=30) is not None
        assert seen.calls == ["task_before_execute"]
    finally:
        case.stop()


def test_without_a_worker_tasks_stay_queued_and_start_refuses() -> None:
    app = make_app(QueueTasks)
    case = SyncTestCase(app=app)
    case.settings(TestConfig(storage=True, plugins=True))  # neither broker nor worker
    try:
        with pytest.raises(RuntimeError, match="neither the broker nor the worker"):
            case.add_task("square", 2)
        with pytest.raises(RuntimeError, match="runs no worker"):
            case.start_in_background()
        with pytest.raises(RuntimeError, match="runs no worker"):
            case.start()
    finally:
        case.stop()


async def test_async_case_runs_a_worker_on_the_running_loop() -> None:
    app = make_app(AsyncQueueTasks)
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.only_worker())
    serving = asyncio.create_task(case.start(num_workers=3))
    try:
        done = await case.add_task("square", 9, timeout=30)
        assert done is not None and done.returning == 81
        assert await case.get(done.uuid) is not None
    finally:
        await case.stop()
        await asyncio.wait_for(serving, 30)
    assert app.broker_url == UNREACHABLE


async def test_async_case_in_background() -> None:
    app = make_app(AsyncQueueTasks)
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.only_worker())
    case.start_in_background()
    try:
        done = await case.add_task("square", 12, timeout=30)
        assert done is not None and done.returning == 144
    finally:
        await case.stop()
