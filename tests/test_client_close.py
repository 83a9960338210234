"""The clients give their connections back: ``close()`` and ``with``/``async with`` (issue 10, item 15).

A script or a test that sends tasks and ends must not leave its Redis connections to the garbage
collector. Counted on a redis-server of the test's own, where every other client is known.
"""

from __future__ import annotations

import time

import pytest
import redis

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks


def others(url: str) -> int:
    """Clients connected besides the one asking (closing is asynchronous on the server: wait for it)."""
    probe = redis.Redis.from_url(url)
    deadline = time.monotonic() + 5
    while (n := int(probe.info("clients")["connected_clients"]) - 1) and time.monotonic() < deadline:
        time.sleep(0.02)
    probe.close()
    return n


def register(app: QueueTasks | AsyncQueueTasks) -> None:
    @app.task
    def add(a: int, b: int) -> int:
        return a + b


def test_sync_client_close_and_with_release_every_connection(private_redis: object) -> None:
    url = private_redis.url  # type: ignore[attr-defined]
    with QueueTasks("closing", broker_url=url) as app:
        register(app)
        sent = app.add_task("add", 1, 2)
        assert app.get(sent.uuid) is not None and app.wait(sent.uuid, 0.05) is None  # blocking paths
        assert app.cancel(sent.uuid) == "queued"  # a control call: the helper loop's connections
        assert int(redis.Redis.from_url(url).info("clients")["connected_clients"]) > 2
    assert others(url) == 0
    assert app.get(sent.uuid) is not None  # usable again: it reconnects
    app.close()
    assert others(url) == 0


@pytest.mark.asyncio
async def test_async_client_close_and_async_with_release_every_connection(private_redis: object) -> None:
    url = private_redis.url  # type: ignore[attr-defined]
    async with AsyncQueueTasks("closing", broker_url=url) as app:
        register(app)
        sent = await app.add_task("add", 1, 2)
        assert await app.get(sent.uuid) is not None and await app.wait(sent.uuid, 0.05) is None
        assert await app.cancel(sent.uuid) == "queued"
    assert others(url) == 0
    assert await app.get(sent.uuid) is not None
    await app.close()
    assert others(url) == 0
