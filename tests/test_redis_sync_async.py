"""The Redis storage's sync and async entry points are one implementation (issue 12, "collapse the twins").

Before, ``RedisStorage.get``/``get_logs``/``wait`` had blocking twins, and only the blocking ones turned a lost
connection into ``BrokerUnavailable``. Each case below runs through both entry points: same answers, same errors.
"""

from __future__ import annotations

import ast
import time
import uuid as uuid_mod
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from conftest import ROOT, free_port

from qtasks_fast import _corelib as core
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.backends.redis.broker import RedisBroker, RedisConnection
from qtasks_fast.backends.redis.storage import RedisStorage
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.schemas import Envelope

Q = "default"


class Entry:
    """One storage read, called the async way (awaited) or the blocking way (``*_sync``)."""

    def __init__(self, storage: RedisStorage, mode: str) -> None:
        self.storage, self.mode = storage, mode

    async def __call__(self, name: str, *args: Any) -> Any:
        if self.mode == "async":
            return await getattr(self.storage, name)(*args)
        return getattr(self.storage, f"{name}_sync")(*args)


@pytest.fixture(params=["async", "sync"])
async def entry(request: pytest.FixtureRequest, redis_url: str, app_name: str) -> AsyncIterator[Entry]:
    conn = RedisConnection(redis_url)
    storage = RedisStorage(redis_url, app_name=app_name, connection=conn, result_ttl=60)
    yield Entry(storage, request.param)
    await storage.close()
    storage.close_sync()


@pytest.fixture(params=["async", "sync"])
async def unreachable(request: pytest.FixtureRequest, app_name: str) -> AsyncIterator[Entry]:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: connection refused
    storage = RedisStorage(url, app_name=app_name, connection=RedisConnection(url, connect_timeout=1))
    yield Entry(storage, request.param)
    await storage.close()
    storage.close_sync()


def _env(name: str = "add", *args: Any) -> Envelope:
    return Envelope(uuid=str(uuid_mod.uuid4()), task_name=name, args=list(args), queue=Q, created_at=time.time())


async def _finish(storage: RedisStorage, env: Envelope, status: str, result: Any = None, child: str = "") -> None:
    """Store ``env``'s final record as a worker paired with a foreign broker would (``Storage.save``)."""
    d = core.Delivery(Q, 0, b"1-0", msgspec.msgpack.encode(env), 1)
    d.envelope = env
    await storage.save([(d, status, msgspec.msgpack.encode(result), "boom" if status == "error" else "", child)],
                       "w-1")


@pytest.mark.parametrize("call", [("get", "u", [Q]), ("get_logs", "u", Q), ("wait", "u", [Q], 0.2),
                                  ("create", [])])
async def test_an_unreachable_redis_raises_broker_unavailable(unreachable: Entry, call: tuple[Any, ...]) -> None:
    name, *args = call
    if name == "create":
        args = [[_env()]]
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis at redis://127.0.0.1") as caught:
        await unreachable(name, *args)
    assert "\n" not in str(caught.value)


async def test_the_async_client_raises_broker_unavailable_too(app_name: str) -> None:
    """What a user of ``qtasks_fast.asyncio.QueueTasks`` sees: the same error as the sync client's."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with AsyncQueueTasks(app_name, broker_url=url) as app:
        @app.task(name="add")
        async def add(a: int, b: int) -> int:
            return a + b

        some = str(uuid_mod.uuid4())
        for call in (lambda: app.get(some), lambda: app.get_logs(some), lambda: app.wait(some, 0.2)):
            with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
                await call()


async def test_get_sees_new_then_final(entry: Entry) -> None:
    env = _env("add", 1, 2)
    await entry("create", [env])
    assert (await entry("get", env.uuid, [Q])).status == "new"
    assert await entry("get", str(uuid_mod.uuid4()), [Q]) is None
    await _finish(entry.storage, env, "success", 3)
    task = await entry("get", env.uuid, ["other", Q])  # found in the second queue looked at
    assert (task.status, task.returning, task.worker_id) == ("success", 3, "w-1")


async def test_wait_times_out_with_the_current_record_and_returns_the_final_one(entry: Entry) -> None:
    env = _env("add", 1, 2)
    await entry("create", [env])
    started = time.monotonic()
    assert (await entry("wait", env.uuid, [Q], 0.3)).status == "new"
    assert 0.25 <= time.monotonic() - started < 5
    assert await entry("wait", str(uuid_mod.uuid4()), [Q], 0.3) is None  # unknown: at once
    await _finish(entry.storage, env, "success", 3)
    assert (await entry("wait", env.uuid, [Q], 5)).returning == 3


async def test_wait_follows_the_retry_chain(entry: Entry) -> None:
    first, retry = _env("add", 1), _env("add", 1)
    await entry("create", [first, retry])
    await _finish(entry.storage, first, "error", child=retry.uuid)
    await _finish(entry.storage, retry, "success", 7)
    task = await entry("wait", first.uuid, [Q], 5)
    assert (str(task.uuid), task.status, task.returning) == (retry.uuid, "success", 7)


async def test_get_logs(entry: Entry) -> None:
    env = _env()
    assert await entry("get_logs", env.uuid, Q) == []
    await entry.storage.append_logs(env.uuid, Q, ["one", "two \xe9"])
    assert await entry("get_logs", env.uuid, Q) == ["one", "two \xe9"]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_enqueue_entry_points_agree(mode: str, redis_url: str, app_name: str) -> None:
    """``RedisBroker.enqueue``/``enqueue_sync``, fused with the storage or not: same records, same unique skips."""
    conn = RedisConnection(redis_url)
    broker = RedisBroker(redis_url, app_name=app_name, connection=conn)
    fused = RedisStorage(redis_url, app_name=app_name, connection=conn)
    foreign = RedisStorage(redis_url, app_name=app_name)  # its own connection: the broker cannot write for it
    try:
        for storage in (fused, foreign):
            holder, dup = _env(), _env()
            key = f"k-{uuid_mod.uuid4()}"
            holder.meta = {"uq": [key]}
            dup.meta = {"uq": [key]}
            if mode == "async":
                skipped = await broker.enqueue([holder, dup], storage)
            else:
                skipped = broker.enqueue_sync([holder, dup], storage)
            assert skipped == {dup.uuid: holder.uuid}
            assert (await storage.get(holder.uuid, [Q])).status == "new"  # type: ignore[union-attr]
            assert await storage.get(dup.uuid, [Q]) is None
    finally:
        await broker.close()
        broker.close_sync()
        await foreign.close()
        foreign.close_sync()


def test_the_redis_backends_blocking_methods_are_thin_adapters() -> None:
    """Each ``*_sync`` method of the Redis backend is one statement over the shared implementation (a
    ``run_sync`` of the same steps, or ``.sync()`` of the same call): there is no second loop to drift. Only the
    transport (``RedisConnection.execute_sync``: the blocking socket I/O) and ``close_sync`` are sync code."""
    fat = []
    for path in sorted((ROOT / "qtasks_fast" / "backends" / "redis").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_sync") and \
                    node.name not in {"close_sync", "execute_sync"}:
                body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                if len(body) != 1:
                    fat.append(f"{path.name}:{node.lineno} {node.name} ({len(body)} statements)")
    assert not fat, "write the operation once (script.Steps / Call) and adapt it:\n" + "\n".join(fat)
