"""The PostgreSQL backend as a user runs it (issue 15): a worker pool in processes serving both clients, records in
PostgreSQL behind a Redis broker, migrations from an empty schema and again (the CLI), and the transactional
enqueue: a task sent inside a transaction exists only if that transaction commits."""

from __future__ import annotations

import asyncio
import copy
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from conftest import PG_DSN, ProcessHarness, cli_env

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread


def test_a_worker_pool_runs_tasks_for_both_clients(harness: ProcessHarness, pg_url: str, app_name: str) -> None:
    proc = harness.start(pg_url, processes=2)
    harness.wait_ready(proc)
    mod: Any = harness.producer(pg_url)
    app = mod.app
    try:
        done = mod.add.add_task(2, 3, timeout=10)
        assert done is not None and (done.status, done.returning) == ("success", 5)
        sent = app.add_tasks([mod.add.s(i, i) for i in range(300)])
        results = [app.wait(t.uuid, 10) for t in sent]
        assert [r.returning for r in results] == [2 * i for i in range(300)]
        failed = mod.fail.add_task(7, timeout=10)
        assert failed.status == "error" and "failing on purpose with 7" in failed.traceback

        async def async_client() -> Any:
            async with AsyncQueueTasks(app_name, broker_url=pg_url) as aio:
                return await aio.add_task("amul", 6, 7, timeout=10)

        assert asyncio.run(async_client()).returning == 42
    finally:
        app.close()


def _records_status(schema_url: str, uuid_: str) -> str | None:
    schema = schema_url.split("schema=", 1)[1]

    async def read() -> str | None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            return await conn.fetchval(f'SELECT status FROM "{schema}".records WHERE uuid = $1', uuid_)
        finally:
            await conn.close()

    return asyncio.run(read())


def test_records_in_postgresql_behind_a_redis_broker(redis_url: str, pg_url: str, app_name: str) -> None:
    """``storage_url=``: the queue on Redis, the records (and ``wait``) in PostgreSQL."""
    app = QueueTasks(app_name, broker_url=redis_url, storage_url=pg_url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    try:
        assert type(app.storage).__name__ == "PgStorage" and type(app.broker).__name__ == "RedisBroker"
        with WorkerThread(app):
            done = add.add_task(2, 3, timeout=10)
        assert done is not None and done.returning == 5
        assert _records_status(pg_url, str(done.uuid)) == "success"
    finally:
        app.close()


@pytest.fixture
def fresh_schema_url() -> Iterator[str]:
    """A URL naming a schema that does not exist yet (dropped afterwards)."""
    schema = f"qtf_mig_{uuid.uuid4().hex[:8]}"
    yield f"{PG_DSN}?schema={schema}"

    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _migrate(url: str, app_name: str, *flags: str) -> tuple[int, Any]:
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", "migrate", "--broker", url, "--json",
                           *flags], env=cli_env(None, app_name), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_migrate_from_an_empty_schema_and_again(fresh_schema_url: str, pg_url: str, app_name: str) -> None:
    from qtasks_fast.backends.postgres.migrations import MIGRATIONS

    versions = [v for v, _, _ in MIGRATIONS]
    _, dry = _migrate(fresh_schema_url, app_name, "--dry-run")
    assert [m["state"] for m in dry["migrations"]] == ["pending"] * len(versions)  # broker and storage: listed once
    _, first = _migrate(fresh_schema_url, app_name)
    assert [(m["version"], m["state"]) for m in first["migrations"]] == [(v, "applied now") for v in versions]
    _, again = _migrate(fresh_schema_url, app_name)
    assert [(m["version"], m["state"]) for m in again["migrations"]] == [(v, "applied") for v in versions]
    assert "***" not in fresh_schema_url and first["migrations"][0]["target"].endswith(
        "schema " + fresh_schema_url.split("schema=")[1])


def test_migrate_says_there_is_nothing_to_do_on_a_backend_without_a_schema(tmp_path: Any, app_name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", "migrate", "--broker",
                           f"sqlite:///{tmp_path}/q.sqlite3"], env=cli_env(None, app_name), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "nothing to migrate" in proc.stdout, proc.stderr


class Rollback(Exception):
    pass


def test_transactional_enqueue_commit_runs_rollback_leaves_nothing(pg_url: str, app_name: str) -> None:
    app = AsyncQueueTasks(app_name, broker_url=pg_url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def scenario() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            path = await conn.fetchval("SHOW search_path")
            sent: list[Any] = []
            with pytest.raises(Rollback):
                async with conn.transaction():
                    sent.append(await app.add_task("add", 1, 2, connection=conn))
                    raise Rollback
            assert await app.get(sent[0].uuid) is None  # rolled back: no record, no message
            async with conn.transaction():
                kept = await app.add_task("add", 2, 3, connection=conn)
                assert await app.get(kept.uuid) is None  # not visible before the commit
                assert await conn.fetchval("SHOW search_path") == path  # the caller's setting is put back
            with WorkerThread(app):
                done = await app.wait(kept.uuid, 10)
            assert done is not None and (done.status, done.returning) == ("success", 5)
            from qtasks_fast.abc import QueueStatistics, require

            assert (await require(app.broker, QueueStatistics).queue_stats("default")).waiting == 0  # rollback: none
            with pytest.raises(ValueError, match="inside an open transaction"):
                await app.add_task("add", 1, 1, connection=conn)  # no transaction open
        finally:
            await conn.close()
            await app.close()

    asyncio.run(scenario())


def test_the_sync_client_refuses_a_connection_in_one_line(pg_url: str, app_name: str) -> None:
    app = QueueTasks(app_name, broker_url=pg_url)
    try:
        with pytest.raises(TypeError, match=r"^add_task\(connection=...\) is for the async client"):
            app.add_task("add", 1, 2, connection=object())
    finally:
        app.close()


def test_the_outbox_example_runs(pg_url: str) -> None:
    """examples/postgres_outbox.py as the docs tell to run it: the failed order leaves no task, the other runs."""
    from conftest import PG_SCHEMA, ROOT

    proc = subprocess.run([sys.executable, "examples/postgres_outbox.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**cli_env(None, "outbox"), "QTASKS_PG_URL": PG_DSN,
                                           "QTASKS_PG_SCHEMA": PG_SCHEMA})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["order of 'broken lamp' failed (payment declined): no order row, no task",
                                        "mail sent for order 2"]


def test_expired_records_are_swept_by_one_worker_of_the_fleet(pg_url: str, app_name: str) -> None:
    """``result_ttl`` is enforced by a sweep that one worker per period wins (a claim), not every worker."""
    from qtasks_fast.backends import make_backend
    from qtasks_fast.config import GlobalConfig
    from qtasks_fast.testing.contract.harness import envelope, fetch, success

    async def scenario() -> tuple[int, int, int]:
        broker, storage = make_backend(pg_url, app_name, GlobalConfig(result_ttl=0.2))
        a, b = copy.copy(broker), copy.copy(broker)
        await a.start("a-0", "a", ["default"], storage)
        await b.start("b-0", "b", ["default"], storage)
        envs = [envelope() for _ in range(5)]
        await a.enqueue(envs, storage)
        ready, _ = await fetch(a)
        await a.settle([success(d) for d in ready], storage, [])
        await asyncio.sleep(0.3)
        db: Any = broker.db  # type: ignore[attr-defined]
        count = "SELECT count(*) FROM records WHERE app = $1"
        before = await db.fetchval(count, app_name)
        await b.trim_indexes()  # b wins this period's sweep
        swept = await db.fetchval(count, app_name)
        await a.enqueue([envelope()], storage)
        ready, _ = await fetch(a)
        await a.settle([success(d) for d in ready], storage, [])
        await asyncio.sleep(0.3)
        await a.trim_indexes()  # same period: a does not sweep again
        left = await db.fetchval(count, app_name)
        await storage.close()
        return before, swept, left

    assert asyncio.run(scenario()) == (5, 0, 1)


def test_a_schema_named_with_capitals_is_the_one_used(app_name: str, pg_url: str) -> None:
    """``?schema=`` is taken as written (quoted), not folded to lower case by the server's search_path."""
    schema = f"Qtf_Caps_{uuid.uuid4().hex[:6]}"
    app = QueueTasks(app_name, broker_url=f"{PG_DSN}?schema={schema}")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    try:
        with WorkerThread(app):
            done = add.add_task(1, 2, timeout=10)
        assert done is not None and done.returning == 3
        assert _records_status(f"{PG_DSN}?schema={schema}", str(done.uuid)) == "success"
    finally:
        app.close()

        async def drop() -> None:
            conn = await asyncpg.connect(PG_DSN)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()

        asyncio.run(drop())


def test_a_batch_naming_one_task_twice_is_stored_not_refused(pg_url: str, app_name: str) -> None:
    """A worker that retries a settle after an outage may hold two outcomes of one task (its message was handed
    out again meanwhile), and a batch may send one uuid twice: both are stored (the last outcome wins) instead
    of failing the whole batch ("ON CONFLICT DO UPDATE cannot affect row a second time" stopped a worker)."""
    from qtasks_fast.backends import make_backend
    from qtasks_fast.config import GlobalConfig
    from qtasks_fast.testing.contract.harness import envelope, fetch, success

    async def scenario() -> tuple[Any, int]:
        broker, storage = make_backend(pg_url, app_name, GlobalConfig())
        worker = copy.copy(broker)
        await worker.start("w-0", "w", ["default"], storage)
        twice = envelope()
        await worker.enqueue([twice, twice], storage)
        ready, _ = await fetch(worker)
        await worker.settle([success(ready[0], 1), success(ready[0], 2), *(success(d, 3) for d in ready[1:])],
                            storage, [])
        task = await storage.get(twice.uuid, ["default"])
        left = await broker.db.fetchval("SELECT count(*) FROM messages WHERE app = $1", app_name)  # type: ignore[attr-defined]
        await storage.close()
        return task, left

    task, left = asyncio.run(scenario())
    assert task is not None and task.status == "success" and left == 0


def test_a_claim_forgotten_by_a_crash_does_not_run_a_held_task_twice(pg_url: str, app_name: str) -> None:
    """Claims commit with ``synchronous_commit = off``: a server crash may forget one, so the message is free
    again while the worker still runs it. After its failed fetch the worker must not be handed it a second time
    (two outcomes of one task in one settle stopped a worker and re-ran its whole batch)."""
    from qtasks_fast.backends import make_backend
    from qtasks_fast.config import GlobalConfig
    from qtasks_fast.testing.contract.harness import envelope, fetch, success

    async def scenario() -> tuple[list[Any], Any]:
        broker, storage = make_backend(pg_url, app_name, GlobalConfig())
        worker = copy.copy(broker)
        await worker.start("w-0", "w", ["default"], storage)
        await worker.enqueue([envelope()], storage)
        held, _ = await fetch(worker)
        # the crash forgot the claim: the message is as it was before it
        await broker.db.execute("UPDATE messages SET consumer = NULL, lease_until = NULL, deliveries = 0"  # type: ignore[attr-defined]
                                " WHERE app = $1", app_name)
        worker.recover(held)  # the fetch that met the outage failed
        again, _ = await fetch(worker)
        await worker.settle([success(held[0], 1)], storage, [])
        task = await storage.get(held[0].envelope.uuid, ["default"])
        await storage.close()
        return again, task

    again, task = asyncio.run(scenario())
    assert again == [] and task is not None and task.status == "success"


def test_an_error_text_holding_nul_or_a_lone_surrogate_is_stored(pg_url: str, app_name: str) -> None:
    """PostgreSQL ``text`` holds neither NUL nor unencodable code points: such an error text is stored escaped,
    and the other tasks of the batch are not re-run (a refused settle stopped the worker, five times)."""
    app = QueueTasks(app_name, broker_url=pg_url)

    @app.task
    def bad(x: int) -> None:
        raise ValueError(f"nul here:\x00 and \udc80 end {x}")

    @app.task
    def ok(x: int) -> int:
        return x

    try:
        sent = [bad.add_task(1), ok.add_task(2, unique="k\x00ey")]
        with WorkerThread(app):
            done = [app.wait(t.uuid, 10) for t in sent]
        assert done[0].status == "error" and "nul here:\\x00 and \\udc80 end 1" in done[0].traceback
        assert done[1].status == "success" and done[1].returning == 2
        assert _records_deliveries(pg_url, str(sent[1].uuid)) == 1
    finally:
        app.close()


def _records_deliveries(schema_url: str, uuid_: str) -> int:
    schema = schema_url.split("schema=", 1)[1]

    async def read() -> int:
        conn = await asyncpg.connect(PG_DSN)
        try:
            return int(await conn.fetchval(f'SELECT deliveries FROM "{schema}".records WHERE uuid = $1', uuid_))
        finally:
            await conn.close()

    return asyncio.run(read())


def test_a_transactional_enqueue_writes_to_the_app_schema_whatever_the_caller_has(pg_url: str, app_name: str) -> None:
    """A caller's TEMP table named like one of ours (PostgreSQL searches pg_temp first) must not receive the task,
    and a connection to another database is refused in one line instead of enqueueing where no worker looks."""
    app = AsyncQueueTasks(app_name, broker_url=pg_url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    async def scenario() -> None:
        conn = await asyncpg.connect(PG_DSN)
        other = await asyncpg.connect(PG_DSN.rsplit("/", 1)[0] + "/postgres")
        try:
            path = await conn.fetchval("SHOW search_path")
            for table in ("messages", "records"):
                await conn.execute(f"CREATE TEMP TABLE {table} (id serial, app text, queue text, prio smallint,"
                                   " uuid text, body bytea, sender text)")
            async with conn.transaction():
                kept = await app.add_task("add", 2, 3, connection=conn)
            assert await conn.fetchval("SHOW search_path") == path
            assert await conn.fetchval("SELECT count(*) FROM pg_temp.messages") == 0
            with WorkerThread(app):
                done = await app.wait(kept.uuid, 10)
            assert done is not None and done.returning == 5
            async with other.transaction():
                with pytest.raises(ValueError, match=r"needs a connection to this app's database .* 'postgres'$"):
                    await app.add_task("add", 1, 1, connection=other)
        finally:
            await conn.close()
            await other.close()
            await app.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("query", "says"), [("foo=bar", "unknown query parameter 'foo'"),
                                             ("sslmode=bogus", "sslmode='bogus'"),
                                             ("port=abc", "the port of")])
def test_a_mistyped_url_is_refused_at_start_in_one_line(app_name: str, query: str, says: str) -> None:
    """Not a raw server error on every call, nor a broker "not reachable, retry later" the pool waits out for ever."""
    from qtasks_fast.exceptions import ConfigError

    with pytest.raises(ConfigError, match=f"^{says}.*postgresql://postgres:\\*\\*\\*@") as err:
        QueueTasks(app_name, broker_url=f"postgresql://postgres:pw@127.0.0.1:5432/test?schema=x&{query}").broker  # noqa: B018
    assert "\n" not in str(err.value) and "pw" not in str(err.value).replace("password", "")
    with pytest.raises(ConfigError, match="is not a number"):
        QueueTasks(app_name, broker_url="postgresql://postgres@127.0.0.1:abc/test").broker  # noqa: B018


def test_a_failed_enqueue_gives_its_unique_key_back(pg_url: str, redis_url: str, app_name: str) -> None:
    """PostgreSQL broker, records elsewhere: the key is claimed before the records are written; when that write
    fails the caller retries, and the retry must not be skipped as a duplicate of a task that never existed."""
    from qtasks_fast.exceptions import BrokerUnavailable

    bad = QueueTasks(app_name, broker_url=pg_url, storage_url="redis://127.0.0.1:1/0")
    good = QueueTasks(app_name, broker_url=pg_url, storage_url=redis_url)
    try:
        with pytest.raises(BrokerUnavailable):
            bad.add_task("noop", 1, unique="order-42")
        assert good.add_task("noop", 1, unique="order-42") is not None
    finally:
        bad.close()
        good.close()


def test_an_idle_worker_runs_no_statement_until_woken(pg_url: str, app_name: str, monkeypatch: Any) -> None:
    """The issue: LISTEN/NOTIFY wake-ups, no polling while idle (an idle 2-process fleet ran ~33 transactions a
    second: claims, due-time reads, cancel_requests re-read every 0.25 s). An idle worker runs none, yet a new
    task, a delayed one coming due and a cancel of a running task all still reach it."""
    import time

    from qtasks_fast.backends.postgres.db import PgDb

    app = QueueTasks(app_name, broker_url=pg_url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def slow() -> None:
        await asyncio.sleep(60)

    statements = 0
    pool = PgDb.pool

    async def counted(self: PgDb, durable: bool = True) -> Any:
        nonlocal statements
        statements += 1  # every statement and transaction of the backend takes a pooled connection
        return await pool(self, durable)

    try:
        with WorkerThread(app):
            assert add.add_task(1, 2, timeout=10).returning == 3
            time.sleep(0.5)  # the worker's last empty claim and its startup writes are done
            monkeypatch.setattr(PgDb, "pool", counted)
            time.sleep(2)
            idle = statements
            monkeypatch.setattr(PgDb, "pool", pool)
            assert add.add_task(2, 3, timeout=10).returning == 5
            assert add.add_task(3, 4, countdown=1, timeout=10).returning == 7
            running = slow.add_task()
            deadline = time.monotonic() + 10
            while (t := app.get(running.uuid)) is None or t.status != "process":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert app.cancel(running.uuid) == "running"
            assert app.wait(running.uuid, 10).status == "cancel"
        assert idle == 0
    finally:
        app.close()


def test_synchronous_commit_on_in_the_url_makes_claims_and_settles_durable(pg_url: str) -> None:
    """Claims and settles skip the WAL flush by default (a crash may re-run a finished task, docs/postgres.md);
    ``?synchronous_commit=on`` is the documented way to close that window."""
    from qtasks_fast.backends.postgres.db import PgDb

    async def worker_setting(url: str) -> str:
        db = PgDb(url)
        try:
            async with db.tx(durable=False) as conn:
                return str(await conn.fetchval("SHOW synchronous_commit"))
        finally:
            await db.close()

    assert asyncio.run(worker_setting(pg_url)) == "off"
    assert asyncio.run(worker_setting(pg_url + "&synchronous_commit=on")) == "on"


def test_a_finished_event_loop_leaves_no_connection_open(pg_url: str, app_name: str) -> None:
    """Each ``asyncio.run`` gets pools of its own (a pool cannot cross loops); once that loop has ended, its
    connections are closed at the next use, not kept until the process exits (a test suite or a service calling
    ``asyncio.run`` per request ran the server out of connections: "too many clients already")."""
    import psutil

    app = QueueTasks(app_name, broker_url=pg_url)

    def open_to_server() -> int:
        proc = psutil.Process()
        conns = proc.net_connections("tcp") if hasattr(proc, "net_connections") else proc.connections("tcp")
        return sum(1 for c in conns if c.raddr and c.raddr.port == 5432 and c.status == psutil.CONN_ESTABLISHED)

    async def use() -> None:
        await app.broker.workers()

    asyncio.run(use())
    first = open_to_server()
    for _ in range(8):
        asyncio.run(use())
    assert open_to_server() <= first


@pytest.mark.parametrize("query", ["foo=bar", "sslmode=bogus"])
def test_a_bad_url_is_one_line_from_the_cli_with_the_password_hidden(query: str, app_name: str) -> None:
    """A URL the backend refuses at start (unknown parameter, bad sslmode) is one line and exit 2 from every
    command, as the backend contract's ``check_url`` says, not a traceback; the password stays hidden."""
    proc = subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "mixed_app", "migrate", "--broker-file",
                           "/dev/stdin"], input=f"postgresql://u:hunter2@127.0.0.1:5432/test?{query}\n",
                          env=cli_env(None, app_name), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "hunter2" not in proc.stderr
    assert query.split("=")[0] in proc.stderr and "***" in proc.stderr
