"""A finished task's record says how many times its message was delivered (``Task.deliveries``).

1 for a task run once; 2 when a consumer fetched it and died (never settled) and another one took it
over after the lease: the duplicate is visible in the record, on every backend, in the record a
producer awaiting the task receives, and in a dead-lettered task's record. Records and files from
before the field still read: an old 7-element Redis record as 1, an SQLite file without the column
gains it when opened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import re
import sqlite3
import time
import uuid as _uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery
from qtasks_fast.backends.redis.control import queue_prefix
from qtasks_fast.backends.redis.storage import parse_record_blob
from qtasks_fast.backends.sqlite.db import SCHEMA
from qtasks_fast.schemas import Envelope
from qtasks_fast.testing import WorkerThread

LEASE = 0.5


def make_app(app_name: str, url: str) -> QueueTasks:
    app = QueueTasks(app_name, broker_url=url, config=GlobalConfig(lease_seconds=LEASE))

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app


async def consumer(app: QueueTasks, url: str, name: str) -> tuple[Any, Any]:
    """A started broker consuming the default queue as ``name``, and its storage: its own connections,
    except on memory:// (a copy of the app's broker, whose state lives in the app)."""
    if url == "memory://":
        broker, storage = app._resolve()
        broker = copy.copy(broker)
    else:
        broker, storage = make_app(app.name, url)._resolve()
    await broker.start(name, name, ["default"], storage)
    return broker, storage


async def fetch_one(broker: Any, handlers: dict[str, Any]) -> Delivery:
    got: list[Delivery] = []
    bad: list[Any] = []
    deadline = time.monotonic() + 30
    while not got:
        assert time.monotonic() < deadline, "nothing (re)delivered"
        for queue, flat in await broker.fetch(1, 0.2):
            core.decode_batch(queue, flat, handlers, 1 << 20, got, bad)
    assert not bad
    (d,) = got
    return d


async def redeliver(app: QueueTasks, url: str) -> tuple[Any, Any, Delivery]:
    """A ghost consumer fetches the one queued message and dies; after its lease another consumer fetches
    it again. Returns that consumer, its storage and its delivery (not settled)."""
    ghost, _ = await consumer(app, url, "ghost-0")
    first = await fetch_one(ghost, app.tasks)
    assert first.deliveries == 1
    await asyncio.sleep(LEASE + 0.2)
    second, storage = await consumer(app, url, "second-0")
    again = await fetch_one(second, app.tasks)
    assert again.msg_id == first.msg_id and again.deliveries == 2
    return second, storage, again


def settle_redelivered(app: QueueTasks, url: str, result: Any) -> None:
    """Deliver the app's queued message twice (see :func:`redeliver`), then settle it with ``result``."""

    async def scenario() -> None:
        second, storage, d = await redeliver(app, url)
        await second.settle([(d, "success", core.encode(result), "", "")], storage, [])

    asyncio.run(scenario())


def test_a_task_run_once_has_one_delivery(url: str, app_name: str) -> None:
    app = make_app(app_name, url)
    with WorkerThread(app, concurrency=1):
        done = app.add_task("add", 1, 2, timeout=20)
    assert done is not None and done.returning == 3 and done.deliveries == 1, done
    assert app.get(done.uuid).deliveries == 1  # type: ignore[union-attr]
    assert app.add_task("add", 2, 2).deliveries == 1  # type: ignore[union-attr] # queued: 1


def test_a_redelivered_task_records_two_deliveries(url: str, app_name: str) -> None:
    app = make_app(app_name, url)
    task = app.add_task("add", 1, 2)
    assert task is not None

    settle_redelivered(app, url, 3)
    done = app.get(task.uuid)
    assert done is not None and (done.status, done.returning, done.deliveries) == ("success", 3, 2), done


def test_an_awaiting_producer_sees_the_deliveries(url: str, app_name: str) -> None:
    """The record pushed to a producer that awaits its task (Redis: the settle's early reply) carries it."""
    app = make_app(app_name, url)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(app.add_task, "add", 2, 3, timeout=30)

        settle_redelivered(app, url, 5)
        done = waiting.result(30)
    assert done is not None and (done.status, done.returning, done.deliveries) == ("success", 5, 2), done


def test_a_dead_lettered_redelivery_records_its_deliveries(url: str, app_name: str) -> None:
    app = make_app(app_name, url)
    task = app.add_task("add", 1, 2)
    assert task is not None

    async def scenario() -> None:
        second, storage, d = await redeliver(app, url)
        await second.dead_letter([(d, "test")], storage)

    asyncio.run(scenario())
    done = app.get(task.uuid)
    assert done is not None and (done.status, done.deliveries) == ("error", 2), done
    assert "dead-lettered: test" in (done.traceback or "")


def test_an_old_redis_record_of_seven_elements_reads_as_one_delivery(redis_url: str, app_name: str) -> None:
    app = make_app(app_name, redis_url)
    env = Envelope(uuid=str(_uuid.uuid4()), task_name="add", args=[1, 2], created_at=time.time())
    old = msgspec.msgpack.encode((msgspec.msgpack.encode(env), "success", str(int(time.time() * 1000)),
                                  msgspec.msgpack.encode(3), "w-0", "", ""))
    parsed = parse_record_blob(old, "default")
    assert parsed is not None and (parsed.status, parsed.returning, parsed.deliveries) == ("success", 3, 1)
    app.storage.conn.sync.set(f"{queue_prefix(app_name, 'default')}:t:{env.uuid}", old)  # type: ignore[attr-defined]
    got = app.get(env.uuid)
    assert got is not None and (got.status, got.returning, got.worker_id, got.deliveries) == ("success", 3, "w-0", 1)


@pytest.mark.parametrize("older", [False, True], ids=["records-without-column", "also-a-table-missing"])
def test_an_sqlite_file_without_the_column_opens_and_records_deliveries(tmp_path: Path, app_name: str,
                                                                        older: bool) -> None:
    path = tmp_path / "old.sqlite3"
    # the file of a release before records.deliveries: none of the query side's columns, indexes, triggers either
    old_schema = SCHEMA.replace(", deliveries INTEGER NOT NULL DEFAULT 1, started INTEGER, finished INTEGER,"
                                " restart_of TEXT);", ");")
    assert old_schema != SCHEMA
    old_schema = re.sub(r"CREATE TRIGGER IF NOT EXISTS \w+ .*?END;", "", old_schema, flags=re.S)
    old_schema = re.sub(r"CREATE (TABLE|INDEX) IF NOT EXISTS (records_(status|name|finished|restart)|events\w*) [^;]*;",
                        "", old_schema)
    assert "events" not in old_schema and "started" not in old_schema
    if older:  # a file older still: the logs table came later too
        old_schema = re.sub(r"CREATE (TABLE|INDEX) IF NOT EXISTS logs\w* [^;]*;", "", old_schema)
        assert "logs" not in old_schema
    db = sqlite3.connect(path)
    db.executescript(old_schema)
    db.close()
    url = f"sqlite:///{path}"
    app = make_app(app_name, url)
    with WorkerThread(app, concurrency=1):
        done = app.add_task("add", 1, 2, timeout=20)
    assert done is not None and (done.returning, done.deliveries) == (3, 1), done
    task = app.add_task("add", 2, 2)
    assert task is not None

    settle_redelivered(app, url, 4)
    assert app.get(task.uuid).deliveries == 2  # type: ignore[union-attr]
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(records)")]
    assert cols.count("deliveries") == 1


def test_status_shows_the_deliveries(tmp_path: Path, app_name: str) -> None:
    from apps.control_helpers import cli, cli_json

    url = f"sqlite:///{tmp_path}/q.sqlite3"
    app = make_app(app_name, url)
    task = app.add_task("add", 1, 2)
    assert task is not None

    settle_redelivered(app, url, 3)
    record = cli_json(url, app_name, "status", str(task.uuid))
    assert (record["status"], record["deliveries"]) == ("success", 2), record
    code, out, err = cli(url, app_name, "status", str(task.uuid))
    assert code == 0, err
    (row,) = [line for line in out.splitlines() if " deliveries " in line]
    assert row.replace("│", " ").split() == ["deliveries", "2"], out
