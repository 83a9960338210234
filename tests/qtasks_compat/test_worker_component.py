"""QTasks' worker components (issue 11): its own test apps build ``SyncThreadWorker(name=, broker=)`` /
``AsyncWorker`` on their broker and pass it as ``QueueTasks(worker=...)``.

What a user relies on: such an app, with only the imports changed, is served by ``python app.py`` and its
tasks answer through SyncTestCase/AsyncTestCase as in QTasks, ``app.worker`` is the object given; a worker that
disagrees with its app (another name, another broker) or carries what only QTasks' worker could use (its own
``config``, ``log``, ``events``) is refused in one line, and any other object as ``worker=`` still is.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qtasks_compat.compat_server import SERVERS, Server, load_app_module
from qtasks_fast import QueueTasks
from qtasks_fast.brokers import SyncRedisBroker
from qtasks_fast.enums.task_status import TaskStatusEnum
from qtasks_fast.schemas.test import TestConfig
from qtasks_fast.tests import AsyncTestCase, SyncTestCase
from qtasks_fast.workers import AsyncWorker, SyncThreadWorker


@pytest.fixture
def served(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The app module of ``request.param`` (a servers/ file), served by ``python <file>`` on a name of its own."""
    name = f"QueueTasks-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("COMPAT_APP_NAME", name)
    monkeypatch.setenv("COMPAT_REDIS_URL", redis_url)
    script = SERVERS / request.param
    server = Server(script, tmp_path / "server.log")
    try:
        server.wait_serving()
        yield load_app_module(script)
    finally:
        assert server.stop() == 0, server.output()
        cleaner = QueueTasks(name, broker_url=redis_url)  # the app's keys, once its worker is gone
        cleaner.flush_all()
        cleaner.close()


@pytest.mark.parametrize("served", ["app_sync_components.py"], indirect=True)
def test_qtasks_sync_test_app_with_its_worker_component(served: Any) -> None:
    app = served.app
    assert isinstance(app.worker, SyncThreadWorker) and app.worker.broker is app.broker
    case = SyncTestCase(app=app)
    case.settings(TestConfig.full())
    try:
        done = case.add_task("test", 5, timeout=60)
        assert done is not None and done.status == TaskStatusEnum.SUCCESS.value
        assert done.returning == "user 5 recorded"
        failed = case.add_task("error_task", timeout=60)
        assert failed is not None and failed.status == TaskStatusEnum.ERROR.value
    finally:
        case.stop()


@pytest.mark.parametrize("served", ["app_async_components.py"], indirect=True)
async def test_qtasks_async_test_app_with_its_worker_component(served: Any) -> None:
    app = served.app
    assert isinstance(app.worker, AsyncWorker)
    case = AsyncTestCase(app=app)
    case.settings(TestConfig.full())
    try:
        done = await case.add_task("test", 7, timeout=60)
        assert done is not None and done.returning == "user 7 recorded"
    finally:
        await case.stop()
        await app.close()


@pytest.mark.parametrize(("make", "says"), [
    (lambda b: SyncThreadWorker(name="other", broker=b), "is not the worker of QueueTasks(name='shop')"),
    (lambda b: SyncThreadWorker(name="shop", broker=SyncRedisBroker(name="shop")), "is not the app's broker"),
    (lambda b: object(), "is not supported by qtasks_fast"),
])
def test_a_worker_that_disagrees_with_its_app_is_refused(make: Any, says: str) -> None:
    broker = SyncRedisBroker(name="shop")
    with pytest.raises(TypeError, match=r"worker=") as info:
        QueueTasks(name="shop", broker=broker, worker=make(broker))
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("option", ["config", "log", "events"])
def test_what_only_qtasks_worker_could_use_is_refused(option: str) -> None:
    with pytest.raises(TypeError, match=f"SyncThreadWorker\\({option}=...\\).*pass {option}= to QueueTasks"):
        SyncThreadWorker(name="shop", **{option: object()})


ENV_APP = """
import os, sys
os.environ["QTASKS_TASK_DEFAULT_PRIORITY"] = "3"
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast import QueueTasks
app = (AsyncQueueTasks if sys.argv[1] == "async" else QueueTasks)(broker_url=sys.argv[2] or None)
print(repr(app.config.task_default_priority))
print(app.worker.config.task_default_priority)
print(app.broker.config.task_default_priority)
print(app.broker.storage.config.task_default_priority)
if app.broker.storage.global_config:
    print(app.broker.storage.global_config.config.task_default_priority)
print(type(app.worker).__name__, app.worker.broker is app.broker)
"""


@pytest.mark.parametrize(("client", "url"), [("async", ""), ("sync", "memory://"), ("async", "redis")])
def test_qtasks_env_example_reads_the_config_through_its_components(client: str, url: str, tmp_path: Path,
                                                                     redis_url: str) -> None:
    """QTasks' examples/env/based_async_app.py (the import changed): ``app.worker``, ``app.broker.config``,
    ``app.broker.storage.config`` and ``if app.broker.storage.global_config:`` on an app built without components."""
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(ENV_APP)
    out = subprocess.run([sys.executable, str(script), client, redis_url if url == "redis" else url],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    worker = "AsyncWorker" if client == "async" else "SyncThreadWorker"
    assert out.stdout.split("\n") == ["3", "3", "3", "3", f"{worker} True", ""], out.stdout


def test_a_qtasks_broker_keeps_its_own_storage_and_global_config() -> None:
    from qtasks_fast.configs import SyncInMemoryGlobalConfig
    from qtasks_fast.storages import SyncRedisStorage

    gc = SyncInMemoryGlobalConfig(name="shop")
    storage = SyncRedisStorage(name="shop", global_config=gc)
    app = QueueTasks(name="shop", broker=SyncRedisBroker(name="shop", storage=storage))
    assert app.broker.storage is storage and app.broker.storage.global_config is gc
    assert app.worker.broker is app.broker and app.worker.config is app.config
