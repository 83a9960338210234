"""QTasks' Redis broker and storage, as QTasks code builds them, drive a qtasks_fast app on Redis."""

from __future__ import annotations

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.brokers import AsyncRedisBroker, SyncRedisBroker
from qtasks_fast.configs import SyncInMemoryGlobalConfig
from qtasks_fast.storages import AsyncRedisStorage, SyncRedisStorage
from qtasks_fast.testing import WorkerThread


def test_qtasks_built_broker_runs_tasks_and_shares_keys_with_a_url_app(redis_url: str, app_name: str) -> None:
    gc = SyncInMemoryGlobalConfig(name=app_name)
    storage = SyncRedisStorage(name=app_name, url=redis_url, global_config=gc)
    broker = SyncRedisBroker(name=app_name, url=redis_url, storage=storage)
    app = QueueTasks(app_name, broker=broker)

    @app.task
    def mul(a: int, b: int) -> int:
        return a * b

    assert app.broker is broker and app.storage is storage and broker.storage.global_config is gc
    with WorkerThread(app):
        done = mul.add_task(6, 7, timeout=10)
    assert done is not None and done.returning == 42
    by_url = QueueTasks(app_name, broker_url=redis_url)  # the same Redis keys as broker_url= gives
    seen = by_url.get(done.uuid)
    assert seen is not None and seen.status == "success" and seen.returning == 42
    by_url.close()
    app.close()


async def test_async_names_with_the_async_client(redis_url: str, app_name: str) -> None:
    broker = AsyncRedisBroker(name=app_name, url=redis_url)  # builds its own storage from url
    app = AsyncQueueTasks(app_name, broker=broker)
    assert isinstance(app.storage, SyncRedisStorage) and app.storage is broker.storage
    assert isinstance(AsyncRedisStorage(name=app_name, url=redis_url), SyncRedisStorage)

    @app.task
    async def hello() -> str:
        return "hi"

    with WorkerThread(app):
        done = await app.add_task("hello", timeout=10)
    assert done is not None and done.returning == "hi"
    await app.close()


def test_qtasks_options_without_a_meaning_here_are_refused(redis_url: str) -> None:
    with pytest.raises(TypeError, match=r"queue_name=.*@app.task\(queue="):
        SyncRedisBroker(url=redis_url, queue_name="emails")
    with pytest.raises(TypeError, match="redis_connect="):
        SyncRedisStorage(url=redis_url, redis_connect=object())
    with pytest.raises(ValueError, match="differ"):
        SyncRedisBroker(url=redis_url, storage=SyncRedisStorage(url=redis_url + "?db=1"))
