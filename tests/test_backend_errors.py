"""The transient/fatal rule (qtasks_fast.abc.broker) at the backends' boundary: what leaves a backend is ours
(``BrokerUnavailable``/``BrokerFull`` for what time fixes, ``BrokerRefused``/``BrokerError`` otherwise), never
redis-py's or sqlite3's exceptions, so the worker classifies failures without importing a client library."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid as _uuid
from typing import Any

import pytest
import redis
from conftest import free_port

from qtasks_fast import BrokerError, BrokerFull, BrokerRefused, BrokerUnavailable
from qtasks_fast._corelib import Delivery
from qtasks_fast.backends.redis.broker import RedisBroker, RedisConnection
from qtasks_fast.backends.redis.errors import outage
from qtasks_fast.backends.redis.storage import RedisStorage
from qtasks_fast.backends.sqlite.db import ours
from qtasks_fast.faults import transient
from qtasks_fast.schemas import Envelope
from qtasks_fast.worker.runner import EXIT_PERMANENT, exit_code

URL = "redis://127.0.0.1:6379/0"


def _calls(broker: RedisBroker, storage: RedisStorage) -> dict[str, Any]:
    d = Delivery("default", 0, b"1-0", b"", 1)
    env = Envelope(uuid=str(_uuid.uuid4()), task_name="t", args=[], queue="default", created_at=time.time())
    d.envelope = env
    return {
        "renew": lambda: broker.renew([d]),
        "release": lambda: broker.release([d]),
        "dead_letter": lambda: broker.dead_letter([(d, "bad")], storage),
        "settle": lambda: broker.settle([(d, "success", b"\xc0", "", "")], storage, []),
        "trim_indexes": lambda: broker.trim_indexes(),
        "enqueue": lambda: broker.enqueue([env], storage),
        "storage.get": lambda: storage.get(env.uuid, ["default"]),
        "storage.save": lambda: storage.save([(d, "success", b"\xc0", "", "")], "w"),
        "storage.mark_started": lambda: storage.mark_started([d], "w"),
    }


@pytest.mark.parametrize("call", list(_calls(RedisBroker(), RedisStorage())))
def test_every_core_call_to_an_unreachable_redis_raises_broker_unavailable(call: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    conn = RedisConnection(url, connect_timeout=1.0)
    broker, storage = RedisBroker(url, connection=conn), RedisStorage(url, connection=conn)
    broker._queues, broker._consumer = ["default"], "w-0"

    async def main() -> BaseException:
        try:
            await _calls(broker, storage)[call]()
        except Exception as exc:  # noqa: BLE001 - the exception is what is checked
            return exc
        finally:
            await conn.aclose()
        raise AssertionError(f"{call} on {url} did not fail")

    exc = asyncio.run(main())
    assert isinstance(exc, BrokerUnavailable) and not isinstance(exc, redis.RedisError), repr(exc)
    assert "cannot reach Redis at" in str(exc) and transient(exc)
    assert isinstance(exc.__cause__, redis.ConnectionError)  # the client's error stays readable as the cause


def test_a_subclass_override_is_inside_the_boundary_too() -> None:
    class Custom(RedisBroker):
        async def renew(self, deliveries: Any) -> list[Delivery]:
            raise redis.ReadOnlyError("You can't write against a read only replica.")

    with pytest.raises(BrokerUnavailable, match="refuses writes for now") as caught:
        asyncio.run(Custom(URL).renew([]))
    assert not isinstance(caught.value, BrokerFull)


@pytest.mark.parametrize(("error", "ours_type", "retried"), [
    (redis.ConnectionError("Connection refused"), BrokerUnavailable, True),
    (redis.TimeoutError("Timeout reading from socket"), BrokerUnavailable, True),
    (redis.ResponseError("LOADING Redis is loading the dataset in memory"), BrokerUnavailable, True),
    (redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"), BrokerUnavailable, True),
    (redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), BrokerFull, True),
    (redis.AuthenticationError("invalid username-password pair"), BrokerRefused, False),
    (redis.exceptions.NoPermissionError("this user has no permissions to run the 'evalsha' command"),
     BrokerRefused, False),
    (redis.ResponseError("DB index is out of range"), BrokerRefused, False),
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"), BrokerError, False),
])
def test_redis_errors_map_to_ours_by_the_one_rule(error: redis.RedisError, ours_type: type, retried: bool) -> None:
    mapped = outage(URL, error)
    assert type(mapped) is ours_type, repr(mapped)
    assert transient(mapped) is retried
    # a refusal ends a worker for good (the supervisor stops); anything else fatal is a crash it restarts
    if ours_type is BrokerRefused:
        assert exit_code(mapped) == EXIT_PERMANENT


@pytest.mark.parametrize(("message", "ours_type"), [
    ("database is locked", BrokerUnavailable),
    ("database table is locked", BrokerUnavailable),
    ("database or disk is full", BrokerFull),
    ("no such table: records", None),
])
def test_sqlite_errors_map_to_ours(message: str, ours_type: type | None) -> None:
    class Backend:
        path = "/tmp/q.sqlite3"

    mapped = ours(Backend(), sqlite3.OperationalError(message))
    if ours_type is None:
        assert mapped is None  # a bug or a broken file: left as it is, fatal
    else:
        assert type(mapped) is ours_type and transient(mapped) and "/tmp/q.sqlite3" in str(mapped)
