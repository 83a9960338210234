"""The short paths of an idle task's dispatch on Redis (issue 16): ``add_task``'s op ``add`` writes what op
``enqueue`` writes for the same call, so the query side, cancel and the worker cannot tell them apart; commands
packed ahead of time are the bytes redis-py would send; the grace timer of plain-read starts, kept armed
between tasks, still waits the whole grace for a batch held after it was armed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis
from redis.connection import Connection

from qtasks_fast import QueueTasks, query
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.backends import make_backend
from qtasks_fast.backends.redis.broker import RedisBroker, queue_prefix
from qtasks_fast.backends.redis.index import START_GRACE, PendingStarts
from qtasks_fast.backends.redis.script import _pack_command, pack_resp
from qtasks_fast.backends.redis.storage import RedisStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.portal import portal
from qtasks_fast.schemas import Envelope
from qtasks_fast.testing.contract.harness import envelope


@pytest_asyncio.fixture
async def fused(redis_url: str, app_name: str) -> AsyncIterator[tuple[RedisBroker, RedisStorage]]:
    broker, storage = make_backend(redis_url, app_name, GlobalConfig(priority_levels=3))
    assert isinstance(broker, RedisBroker) and isinstance(storage, RedisStorage)
    yield broker, storage
    await storage.close()


def _written(client: redis.Redis, prefix: str, env: Envelope) -> dict[str, Any]:
    """What an enqueue of ``env`` left in Redis, with the ids and times that differ between two calls masked."""
    q: Any = client.hget(f"{prefix}:q", env.uuid)
    prio, stream_id = q.decode().split()
    fields: Any = client.xrange(f"{prefix}:s:{prio}", stream_id, stream_id)[0][1]
    events: Any = client.xrange(f"{prefix}:ev")
    mine = [
        (int(f[b"c"]), msgspec.msgpack.decode(f[b"b"]))
        for _, f in events
        if env.uuid in msgspec.msgpack.decode(f[b"b"])
    ]
    return {
        "prio": prio,
        "fields": list(fields),
        "u": fields[b"u"].decode(),
        "blob": msgspec.msgpack.decode(fields[b"d"], type=Envelope),
        "score": client.zscore(f"{prefix}:x:n:{env.task_name}", env.uuid),
        "named": client.sismember(f"{prefix}:x:names", env.task_name),
        "events": mine,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("prio", [0, 2, 7])
async def test_op_add_writes_what_op_enqueue_writes(
    fused: tuple[RedisBroker, RedisStorage], redis_url: str, prio: int
) -> None:
    """One plain envelope goes through op add; with a second one beside it, the same call goes through op
    enqueue. Stream entry, P:q, the name's zset, P:x:names and the 'new' event must be the same (a priority
    beyond the served levels lands on the last one in both)."""
    broker, storage = fused
    client = redis.Redis.from_url(redis_url)
    prefix = queue_prefix(broker.app_name, "default")
    alone = envelope("add", prio=prio)
    pair = [envelope("add", prio=prio), envelope("other")]
    await broker.enqueue([alone], storage)
    await broker.enqueue(pair, storage)
    lean, general = _written(client, prefix, alone), _written(client, prefix, pair[0])
    assert lean["prio"] == general["prio"] == str(min(prio, 2))
    assert lean["blob"].uuid == lean["u"] == alone.uuid and general["blob"].uuid == general["u"] == pair[0].uuid
    assert lean["score"] == round(alone.created_at * 1000) and general["score"] == round(pair[0].created_at * 1000)
    assert lean["events"] == [(1, [alone.uuid, "new", "add", ""])]
    assert general["events"][0][1][:4] == [pair[0].uuid, "new", "add", ""]
    for key in ("fields", "named"):
        assert lean[key] == general[key], key
    # the rest of the system finds it as any queued task: by uuid, by name, and cancels it
    assert (await storage.get(alone.uuid, ["default"])).status == "new"  # type: ignore[union-attr]
    client.close()


def test_add_task_through_op_add_is_found_listed_and_cancelled(redis_url: str, app_name: str) -> None:
    """The sync client's common call (op add), seen from every side a user relies on."""
    app = QueueTasks(app_name, broker_url=redis_url)

    @app.task(name="hello")
    def hello(who: str) -> str:
        return f"hi {who}"

    task = app.add_task("hello", "you", priority=1)
    assert task is not None
    uid = str(task.uuid)
    assert app.get(task.uuid).status == "new"  # type: ignore[union-attr]
    listed = portal().run(query.list_tasks(app, TaskFilter(task_name="hello")))
    assert [(str(t.uuid), t.status) for t in listed.tasks] == [(uid, "new")]
    events = portal().run(query.events(app, None))
    assert [(str(e.uuid), e.status) for e in events.events] == [(uid, "new")]
    assert app.cancel(task.uuid) == "queued"
    assert app.get(task.uuid).status == "cancel"  # type: ignore[union-attr]
    app.close()


@pytest.mark.parametrize(
    "args",
    [
        (
            "EVALSHA",
            "a" * 40,
            1,
            "qtf:{app:default}",
            "add",
            "1",
            0,
            "d1f4",
            b"\x92\x01\xc4\x00",
            "h\u00e9llo",
            17,
            b"",
        ),
        ("XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "BLOCK", 5000, "STREAMS", "s:0", "s:1", ">", ">"),
    ],
)
def test_packed_commands_are_the_bytes_redis_py_sends(args: tuple[Any, ...]) -> None:
    expected = b"".join(Connection().pack_command(*args))
    assert _pack_command(args) == expected
    assert pack_resp(args) == expected  # the fallback without hiredis


class _Recorder:
    """A stand-in for Script: records when op started is sent."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def started(self, *args: Any) -> None:
        self.sent.append(time.monotonic())


@pytest.mark.asyncio
async def test_a_batch_held_after_the_grace_timer_was_armed_waits_the_whole_grace() -> None:
    """The timer armed for a batch a settle already carried is left running; when it fires, a batch held since
    is younger than the grace and must not be flushed yet, only once its own grace has passed."""
    rec = _Recorder()
    starts = PendingStarts(rec)  # type: ignore[arg-type]
    starts.note([("default", [0, b"1-0", msgspec.msgpack.encode(envelope()), 1])], "w")  # arms the timer
    t0 = time.monotonic()
    await asyncio.sleep(START_GRACE / 2)
    starts._batches.clear()  # what a settle's carry does
    # held at ~grace/2, while the first timer runs
    starts.note([("default", [0, b"2-0", msgspec.msgpack.encode(envelope()), 1])], "w")
    held_at = time.monotonic()
    await asyncio.sleep(START_GRACE / 2 + 0.1)  # the first timer fired meanwhile
    assert rec.sent == [], "flushed a batch younger than the grace"
    await asyncio.sleep(START_GRACE / 2 + 0.1)
    assert len(rec.sent) == 1 and rec.sent[0] - held_at >= START_GRACE - 0.02 and rec.sent[0] - t0 > START_GRACE
    starts.close()


@pytest.mark.asyncio
async def test_event_ids_are_the_server_clock_in_microseconds(
    fused: tuple[RedisBroker, RedisStorage], redis_url: str
) -> None:
    """Each P:ev entry's id is '<ms>-<µs within that ms>' of Redis' clock when it was written (redis.lua cuts it
    from TIME's digits as text): between the server's time before and after, the part after '-' below 1000, in
    the order written. Ids of every queue's feed are resume points across queues only if they are that time."""
    broker, storage = fused
    client = redis.Redis.from_url(redis_url)
    prefix = queue_prefix(broker.app_name, "default")

    def server_us() -> int:
        s, us = client.time()
        return s * 1_000_000 + us

    before = server_us()
    for _ in range(60):
        await broker.enqueue([envelope()], storage)  # one plain envelope: op add
    after = server_us()
    ids = [i.decode() for i, _ in client.xrange(f"{prefix}:ev")]
    assert len(ids) == 60
    stamps = []
    for i in ids:
        ms, sub = (int(x) for x in i.split("-"))
        assert 0 <= sub < 1000, i
        stamps.append(ms * 1000 + sub)
    assert before <= stamps[0] and stamps[-1] <= after, (before, ids[0], ids[-1], after)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    client.close()
