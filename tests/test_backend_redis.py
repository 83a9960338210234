"""What only the Redis backend must do, beyond the contract suite every backend runs
(qtasks_fast.testing.contract, tests/test_contract.py): its streams do not grow while a long task runs, and
are empty once nothing is pending (finished entries are trimmed, see ``tidy`` in redis.lua).
"""

from __future__ import annotations

import asyncio
import uuid as _uuid

import pytest

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Broker, Delivery
from qtasks_fast.backends.redis.broker import RedisBroker, queue_prefix
from qtasks_fast.testing.contract import Harness
from qtasks_fast.testing.contract.harness import envelope, fetch

Q = "default"


def ok(d: Delivery) -> tuple[Delivery, str, bytes, str, str]:
    return (d, "success", core.encode(None), "", "")


async def fetched(broker: Broker) -> list[Delivery]:
    return (await fetch(broker))[0]


@pytest.mark.asyncio
async def test_redis_stream_stays_small_while_a_long_task_runs(redis_url: str) -> None:
    """Trimming waits for the oldest pending entry; once that one is older than a few seconds (a long
    task), finished entries are deleted at once, so a long task does not make the stream grow; and once
    nothing is pending, every finished entry is gone (purge relies on the same bookkeeping)."""
    h = Harness(redis_url, app_name=f"ctl{_uuid.uuid4().hex[:10]}")
    try:
        broker, storage = h.broker, h.storage
        assert isinstance(broker, RedisBroker)
        stream = f"{queue_prefix(broker.app_name, Q)}:s:0"
        long_worker, worker = await h.consumer("w-0"), await h.consumer("w-1")
        await broker.enqueue([envelope()], storage)
        (long,) = await fetched(long_worker)
        await broker.enqueue([envelope() for _ in range(5)], storage)
        await worker.settle([ok(d) for d in await fetched(worker)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 6  # a young pending entry: the finished ones wait
        await asyncio.sleep(5.2)
        await broker.enqueue([envelope() for _ in range(5)], storage)
        await worker.settle([ok(d) for d in await fetched(worker)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 6  # the first five still wait, the new five are gone
        await long_worker.settle([ok(long)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 0
    finally:
        await h.close()


@pytest.mark.asyncio
async def test_redis_queued_index_stays_a_hashtable(redis_url: str) -> None:
    """P:q (uuid -> where a queued or running task is) is looked up and deleted once per task: kept as a
    listpack (up to 512 short entries) every HSET and HDEL walked it, so a queue holding a few hundred tasks
    paid that walk per task. The batch ops keep it a hashtable, also once every task finished (the hash is not
    deleted and re-created as a listpack by the next burst), and the entry that does so is no task's."""
    h = Harness(redis_url, app_name=f"ctl{_uuid.uuid4().hex[:10]}")
    try:
        broker, storage = h.broker, h.storage
        assert isinstance(broker, RedisBroker)
        index = f"{queue_prefix(broker.app_name, Q)}:q"
        worker = await h.consumer("w-0")
        envs = [envelope() for _ in range(3)]
        await broker.enqueue(envs, storage)
        assert await broker.conn.aio.object("encoding", index) == b"hashtable"
        fields: list[bytes] = await broker.conn.aio.hkeys(index)  # type: ignore[assignment]
        assert {u.decode() for u in fields} - {" ht"} == {e.uuid for e in envs}
        await worker.settle([ok(d) for d in await fetched(worker)], storage, [])
        assert await broker.conn.aio.object("encoding", index) == b"hashtable"
        assert await broker.conn.aio.hkeys(index) == [b" ht"]
        assert [(await storage.get(e.uuid, [Q])).status for e in envs] == ["success"] * 3  # type: ignore[union-attr]
    finally:
        await h.close()


@pytest.mark.asyncio
async def test_redis_settle_of_one_trims_only_what_was_delivered(redis_url: str) -> None:
    """An idle worker's settle of its one task empties the stream (tidy's short path, no XINFO GROUPS); with
    a task queued behind it, or when the stream's one entry is not the settled one (that entry deleted while it
    ran, a newer one not yet delivered), the entry no worker has read stays and is fetched next."""
    h = Harness(redis_url, app_name=f"ctl{_uuid.uuid4().hex[:10]}")
    try:
        broker, storage = h.broker, h.storage
        assert isinstance(broker, RedisBroker)
        stream = f"{queue_prefix(broker.app_name, Q)}:s:0"
        worker = await h.consumer("w-0")
        for _ in range(3):  # idle: one task at a time
            await broker.enqueue([envelope()], storage)
            (d,) = await fetched(worker)
            await worker.settle([ok(d)], storage, [])
            assert await broker.conn.aio.xlen(stream) == 0
        await broker.enqueue([envelope()], storage)
        await broker.enqueue([envelope()], storage)
        (first,) = (await fetch(worker, count=1))[0]
        await worker.settle([ok(first)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 1  # the one behind it, never delivered
        (second,) = (await fetch(worker, count=1))[0]
        await broker.conn.aio.xdel(stream, second.msg_id)  # its entry lost while it runs
        later = envelope()
        await broker.enqueue([later], storage)
        await worker.settle([ok(second)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 1  # the stream's one entry is not the settled one: kept
        (third,) = await fetched(worker)
        assert third.envelope is not None and third.envelope.uuid == later.uuid
    finally:
        await h.close()
