"""Redis at ``maxmemory`` (policy ``noeviction``): producers get ``BrokerFull``, workers wait it out.

Each test starts its own redis-server with a 10 MB limit and fills it with one large filler
key: a write is refused once used memory is above the limit, so one SET made below it puts
Redis over at once, and deleting the key frees it again.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import PrivateRedis

from qtasks_fast import BrokerFull, BrokerUnavailable, QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread

FILLER = "filler"


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path, ["--maxmemory", "10mb", "--maxmemory-policy", "noeviction"])
    r.start()
    yield r
    r.stop(signal.SIGKILL)


def fill(url: str) -> redis.Redis:
    """Put Redis well over its maxmemory with one filler key (written with the limit lifted for a moment:
    the 12 MB argument itself would count against it)."""
    client = redis.Redis.from_url(url)
    limit = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", 0)
    client.set(FILLER, b"x" * 12_000_000)
    client.config_set("maxmemory", limit)
    client.connection_pool.disconnect()  # the 12 MB query buffer of that connection would outlive the key
    with pytest.raises(redis.ResponseError, match="maxmemory"):
        client.set("probe", b"1")
    return client


def test_producers_get_broker_full_naming_maxmemory_and_what_to_do(full_redis, app_name):
    app = QueueTasks(app_name, broker_url=full_redis.url)
    aapp = AsyncQueueTasks(app_name, broker_url=full_redis.url)

    @app.task(name="inc")
    async def inc(x: int) -> int:
        return x + 1

    aapp.task(name="inc")(inc.func)
    client = fill(full_redis.url)

    with pytest.raises(BrokerFull, match="maxmemory") as caught:
        app.add_task("inc", 1)
    message = str(caught.value)
    assert "\n" not in message
    for advice in ("free memory", "raise maxmemory", "result_ttl", "retry later"):
        assert advice in message.lower(), message
    with pytest.raises(BrokerFull, match="maxmemory"):
        app.add_tasks([inc.s(i) for i in range(10)])
    assert isinstance(caught.value, BrokerUnavailable), "code that retries an unreachable broker retries this"

    async def async_calls() -> None:
        with pytest.raises(BrokerFull, match="maxmemory"):
            await aapp.add_task("inc", 1)
        with pytest.raises(BrokerFull, match="maxmemory"):
            await aapp.add_tasks([inc.s(i) for i in range(10)])

    asyncio.run(async_calls())

    client.delete(FILLER)  # memory freed: the same producers work again
    assert app.add_task("inc", 1).status == "new"
    assert asyncio.run(aapp.add_task("inc", 2)).status == "new"  # type: ignore[union-attr]


def test_worker_retries_the_settle_under_oom_and_stays_up(full_redis, app_name):
    """Tasks finish while Redis refuses writes: the worker keeps their results and leases, retries the
    settle, and stores every result once memory is freed; nothing runs twice or is dead-lettered."""
    app = QueueTasks(app_name, broker_url=full_redis.url)
    gate = threading.Event()
    runs: list[int] = []

    @app.task(name="gated")
    async def gated(i: int) -> int:
        while not gate.is_set():
            await asyncio.sleep(0.01)
        runs.append(i)
        return i * 2

    n = 20
    tasks = app.add_tasks([gated.s(i) for i in range(n)])
    worker = WorkerThread(app, concurrency=n)
    with worker:
        deadline = time.monotonic() + 30
        while sum(1 for t in tasks if (app.get(t.uuid) or t).status == "process") < n:
            assert time.monotonic() < deadline, "the worker did not start the tasks"
            time.sleep(0.05)
        client = fill(full_redis.url)
        gate.set()
        while len(runs) < n:
            assert time.monotonic() < deadline, "the tasks did not run"
            time.sleep(0.05)
        time.sleep(2)  # several settle attempts are refused (OOM) meanwhile
        assert worker._thread.is_alive() and worker._error is None, f"the worker died: {worker._error!r}"
        assert all(app.get(t.uuid).status == "process" for t in tasks)  # type: ignore[union-attr]

        client.delete(FILLER)
        deadline = time.monotonic() + 30
        while not all(app.get(t.uuid).finished for t in tasks):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "results were not stored after memory was freed"
            assert worker._error is None, f"the worker died: {worker._error!r}"
            time.sleep(0.05)
        assert worker._thread.is_alive()
    for t in tasks:
        done = app.get(t.uuid)
        assert done is not None and done.status == "success" and done.returning == done.args[0] * 2, done
    assert sorted(runs) == list(range(n)), "a task ran twice"
    assert app.dlq_list() == []


def test_inspect_shows_redis_memory_and_warns_when_nearly_full_or_evicting(full_redis, app_name):
    from apps.control_helpers import cli, cli_json

    mem = cli_json(full_redis.url, app_name, "inspect")["broker_memory"]
    assert mem["maxmemory"] == 10 * 2**20 and mem["maxmemory_policy"] == "noeviction", mem
    assert 0 < mem["used_memory"] < mem["maxmemory"] and mem["warnings"] == [], mem
    code, out, err = cli(full_redis.url, app_name, "inspect")
    assert code == 0 and "broker memory" in out and "10.0 MiB" in out and "noeviction" in out, (out, err)
    assert "warning" not in err, err

    client = fill(full_redis.url)
    code, out, err = cli(full_redis.url, app_name, "inspect", "--json")
    assert code == 0, err
    mem = json.loads(out)["broker_memory"]
    assert mem["used_ratio"] > 0.9, mem
    assert "warning: Redis uses" in err and "of maxmemory" in err and "raise maxmemory" in err, err

    client.delete(FILLER)
    client.config_set("maxmemory-policy", "allkeys-lru")
    code, out, err = cli(full_redis.url, app_name, "inspect")
    assert code == 0 and "allkeys-lru" in out, out
    assert "maxmemory-policy is allkeys-lru" in err and "noeviction" in err, err


def test_a_fetch_refused_under_oom_is_waited_out(full_redis, app_name):
    """A delayed task falls due while Redis is full: the fetch that would move it to its stream is
    refused (OOM). The idle worker waits that out instead of exiting, and runs the task once memory
    is freed."""
    app = QueueTasks(app_name, broker_url=full_redis.url)
    runs: list[int] = []

    @app.task(name="later")
    async def later(i: int) -> int:
        runs.append(i)
        return i

    worker = WorkerThread(app)
    with worker:
        time.sleep(0.5)  # the worker is idle, blocked on its read
        task = app.add_task("later", 7, countdown=1)
        client = fill(full_redis.url)
        time.sleep(3)  # due, and every fetch since has been refused
        assert worker._thread.is_alive() and worker._error is None, f"the worker died: {worker._error!r}"
        assert runs == []
        client.delete(FILLER)
        done = app.wait(task.uuid, 30)
        assert done is not None and done.status == "success" and done.returning == 7, done
        assert worker._error is None
    assert runs == [7]


def test_a_worker_starting_while_redis_is_full_waits_and_then_serves(full_redis, app_name):
    """Creating the consumer groups (XGROUP CREATE MKSTREAM) is a write Redis refuses when full: a worker
    started (or restarted by its supervisor) meanwhile waits for memory instead of exiting."""
    app = QueueTasks(app_name, broker_url=full_redis.url)

    @app.task(name="inc")
    async def inc(x: int) -> int:
        return x + 1

    task = app.add_task("inc", 1)
    client = fill(full_redis.url)
    worker = WorkerThread(app)
    with worker:
        time.sleep(2)
        assert worker._thread.is_alive() and worker._error is None, f"the worker died: {worker._error!r}"
        client.delete(FILLER)
        done = app.wait(task.uuid, 30)
        assert done is not None and done.status == "success" and done.returning == 2, done


def test_a_read_only_redis_gives_producers_broker_unavailable_saying_so(full_redis, app_name):
    """A replica (after a failover, say) answers writes with READONLY: not a full Redis, but an outage all the
    same; producers get BrokerUnavailable naming it, not a raw redis-py error."""
    app = QueueTasks(app_name, broker_url=full_redis.url)

    @app.task(name="inc")
    async def inc(x: int) -> int:
        return x + 1

    client = redis.Redis.from_url(full_redis.url)
    client.replicaof("127.0.0.1", "1")  # a master that does not exist: read-only for as long as it lasts
    try:
        with pytest.raises(BrokerUnavailable, match="refuses writes for now") as caught:
            app.add_task("inc", 1)
        assert not isinstance(caught.value, BrokerFull) and "read only replica" in str(caught.value), caught.value
        assert "\n" not in str(caught.value)
    finally:
        client.replicaof("NO", "ONE")
    assert app.add_task("inc", 1).status == "new"
