"""QTasks' GlobalConfig component (``qtasks.configs``): one shared key-value store, on Redis or in memory."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from qtasks_fast.config import GlobalConfig
from qtasks_fast.configs import (
    AsyncInMemoryGlobalConfig,
    AsyncRedisGlobalConfig,
    QueueConfig,
    SyncInMemoryGlobalConfig,
    SyncRedisGlobalConfig,
)


@pytest.fixture(params=["redis", "memory"])
def pair(request: pytest.FixtureRequest, app_name: str) -> Iterator[tuple[Any, Any]]:
    """Two components of one project (two processes' view of the store)."""
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
        made = [SyncRedisGlobalConfig(name=app_name, url=url) for _ in range(2)]
    else:
        made = [SyncInMemoryGlobalConfig(name=app_name) for _ in range(2)]
    yield made[0], made[1]
    for gc in made:
        gc.stop()


def test_set_get_get_all_get_match_are_shared(pair: tuple[Any, Any]) -> None:
    writer, reader = pair
    writer.set(name="limits", key="rps", value="100")
    writer.set("limits", "burst", 5)
    writer.set("lists", "max", 2.5)
    writer.set("users", "ann", b"admin")
    assert reader.get("limits", "rps") == "100" and reader.get("limits", "burst") == "5"  # text, as Redis answers
    assert reader.get("limits", "nope") is None and reader.get("nothing", "rps") is None
    assert reader.get_all("limits") == {"rps": "100", "burst": "5"} and reader.get_all("nothing") == {}
    # QTasks' shape (cursor, dict): `cursor, found = gc.get_match(...)` unpacks as there
    assert reader.get_match("li*") == (0, {"limits": {"rps": "100", "burst": "5"}, "lists": {"max": "2.5"}})
    assert reader.get_match("user?") == (0, {"users": {"ann": "admin"}}) and reader.get_match("zz*") == (0, {})
    with pytest.raises(TypeError, match="json.dumps"):
        writer.set("limits", "rps", {"per": "second"})


def test_projects_do_not_see_each_other(redis_url: str, app_name: str) -> None:
    ours = SyncRedisGlobalConfig(name=app_name, url=redis_url)
    theirs = SyncRedisGlobalConfig(name=app_name + "x", url=redis_url)
    mem = SyncInMemoryGlobalConfig(name=app_name, config_name="Other")
    try:
        ours.set("k", "f", "1")
        assert theirs.get("k", "f") is None and mem.get("k", "f") is None
        # QTasks' layout, so QTasks processes on the same Redis read the same values
        assert redis.Redis.from_url(redis_url).hget(f"{app_name}:GlobalConfig:k", "f") == b"1"
    finally:
        ours.stop()
        theirs.stop()


def test_get_match_finds_names_a_qtasks_process_wrote(redis_url: str, app_name: str) -> None:
    """QTasks' ``set`` writes the hash ``<project>:GlobalConfig:<name>`` and keeps no index of names: a
    mixed fleet's values (and QTasks' running status ``main``) are found all the same."""
    raw = redis.Redis.from_url(redis_url)
    raw.hset(f"{app_name}:GlobalConfig:limits", mapping={"rps": "7"})  # what QTasks' gc.set("limits", "rps", "7") does
    raw.hset(f"{app_name}:GlobalConfig:main", mapping={"name": app_name, "status": "running"})
    raw.hset(f"{app_name}x:GlobalConfig:limits", mapping={"rps": "1"})  # another project: not ours
    gc = SyncRedisGlobalConfig(name=app_name, url=redis_url)
    try:
        gc.set("lists", "max", "3")
        cursor, found = gc.get_match("li*")
        assert cursor == 0 and found == {"limits": {"rps": "7"}, "lists": {"max": "3"}}
        assert gc.get_match("*")[1]["main"] == {"name": app_name, "status": "running"}
    finally:
        raw.delete(*(f"{app_name}:GlobalConfig:{k}" for k in ("limits", "main", "lists")),
                   f"{app_name}x:GlobalConfig:limits", f"{app_name}:GlobalConfig@names")
        gc.stop()


def test_start_marks_the_project_running_until_stop(pair: tuple[Any, Any]) -> None:
    server, client = pair
    assert client.get("main", "status") is None
    server.start()
    assert server.running and client.get("main", "status") == "running"
    assert client.get("main", "name") == server.name


async def test_async_components(redis_url: str, app_name: str) -> None:
    for gc in (AsyncRedisGlobalConfig(name=app_name, url=redis_url),
               AsyncRedisGlobalConfig(name=app_name, redis_connect=AsyncRedis.from_url(redis_url)),
               AsyncInMemoryGlobalConfig(name=app_name)):
        await gc.set("flags", "beta", "on")
        assert await gc.get("flags", "beta") == "on"
        assert await gc.get_all("flags") == {"beta": "on"}
        assert await gc.get_match("fl*") == (0, {"flags": {"beta": "on"}})
        await gc.start()
        assert await gc.get("main", "status") == "running" and gc.running
        await gc.stop()


def test_a_worker_keeps_the_storages_global_config_running_while_it_serves(redis_url: str, app_name: str) -> None:
    """QTasks' wiring (GlobalConfig -> SyncRedisStorage(global_config=) -> SyncRedisBroker(storage=) -> QueueTasks):
    while a worker serves, ``<name>:GlobalConfig:main`` says ``running``, where a QTasks process sharing the Redis
    (its ``ping(server=True)``) looks; after the worker stops, the component is stopped."""
    from qtasks_fast import QueueTasks
    from qtasks_fast.brokers import SyncRedisBroker
    from qtasks_fast.storages import SyncRedisStorage
    from qtasks_fast.testing import WorkerThread

    gc = SyncRedisGlobalConfig(name=app_name, url=redis_url)
    storage = SyncRedisStorage(name=app_name, url=redis_url, global_config=gc)
    app = QueueTasks(name=app_name, broker=SyncRedisBroker(name=app_name, storage=storage))
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert raw.hgetall(f"{app_name}:GlobalConfig:main") == {}
        with WorkerThread(app):
            deadline = time.monotonic() + 10  # the worker thread starts serving after WorkerThread returns
            while not raw.exists(f"{app_name}:GlobalConfig:main") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert raw.hgetall(f"{app_name}:GlobalConfig:main") == {"name": app_name, "status": "running"}
            assert 0 < raw.ttl(f"{app_name}:GlobalConfig:main") <= 20  # lapses if the worker dies unseen
            assert gc.running
        assert not gc.running
    finally:
        raw.delete(f"{app_name}:GlobalConfig:main")
        app.flush_all()
        app.close()


def test_an_unreachable_redis_is_one_line_saying_where_and_what_to_do() -> None:
    """Still a ``redis.ConnectionError`` (QTasks code catching that keeps working), with advice, never the password."""
    from qtasks_fast.configs.base import GlobalConfigUnreachable

    gc = SyncRedisGlobalConfig(name="shop", url="redis://:s3cret@127.0.0.1:1/2")
    with pytest.raises(redis.ConnectionError) as info:
        gc.set("limits", "rps", "1")
    text = str(info.value)
    assert isinstance(info.value, GlobalConfigUnreachable) and "\n" not in text and "s3cret" not in text
    assert text.startswith("GlobalConfig: Redis at 127.0.0.1:1/2 did not answer") and "url=" in text
    with pytest.raises(GlobalConfigUnreachable):
        gc.get_match("*")


def test_queue_config_is_the_app_config() -> None:
    assert QueueConfig is GlobalConfig
    with pytest.raises(TypeError, match="log="):
        SyncInMemoryGlobalConfig(log=object())
