"""The PostgreSQL worker's hot path (issue 15): what a busy worker's claim and settle cost the server, and that the
cheaper path keeps every guarantee: one statement per claim and per settle, a record gone before its settle is
still stored (and its message acked only then), a task is its message until its settle writes its record once
(schema 5), and databases of schema versions 3 and 4 migrate with their queued tasks and run them."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
import pytest
from conftest import PG_DSN

from qtasks_fast._corelib import Delivery
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.backends.postgres import migrations
from qtasks_fast.backends.postgres.broker import CLAIM, PgBroker
from qtasks_fast.backends.postgres.db import PgDb, now_ms
from qtasks_fast.backends.postgres.records import ENQUEUE, envelope_rows, settle_records
from qtasks_fast.backends.postgres.storage import DELETE_FINISHED_LOGS, PgStorage
from qtasks_fast.schemas import Envelope


@pytest.fixture
def schema_url() -> Iterator[str]:
    """A URL naming a schema of this test alone (dropped afterwards)."""
    schema = f"qtf_hot_{uuid.uuid4().hex[:8]}"
    yield f"{PG_DSN}?schema={schema}"

    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _envelopes(n: int) -> list[Envelope]:
    return [
        Envelope(uuid=str(uuid.uuid4()), task_name="noop", queue="default", created_at=time.time()) for _ in range(n)
    ]


def _outcomes(out: list[tuple[str, list[Any]]]) -> list[Any]:
    """The claim's flat batches as the worker's success outcomes."""
    outcomes = []
    for queue, flat in out:
        for i in range(0, len(flat), 4):
            prio, msg_id, body, deliveries = flat[i : i + 4]
            d = Delivery(queue, prio, msg_id, body, deliveries)
            d.envelope = msgspec.msgpack.decode(body, type=Envelope)
            outcomes.append((d, "success", msgspec.msgpack.encode(d.envelope.uuid), "", ""))
    return outcomes


@asynccontextmanager
async def _worker(url: str) -> AsyncIterator[PgBroker]:
    broker = PgBroker(url, app_name="hot")
    storage = PgStorage(url, app_name="hot", db=broker.db)
    await broker.start("c1", "w1", ["default"], storage)
    try:
        yield broker
    finally:
        await broker.close()
        await broker.db.close()


def test_a_busy_workers_claim_and_settle_are_one_statement_each(schema_url: str, monkeypatch: Any) -> None:
    """Each round trip of a claim or a settle is paid per batch by every worker; a busy worker's usual claim was
    four (BEGIN, promote the due delayed messages, claim, COMMIT) and its settle three. Now one each, and the
    tasks still end ``success`` with their messages acked."""
    logged: list[str] = []
    create_pool = asyncpg.create_pool

    def logging_pool(*args: Any, **kwargs: Any) -> Any:
        async def init(conn: asyncpg.Connection) -> None:
            conn.add_query_logger(lambda record: logged.append(record.query))

        return create_pool(*args, init=init, **kwargs)

    monkeypatch.setattr(asyncpg, "create_pool", logging_pool)

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            await broker.enqueue(_envelopes(30), storage)
            # warm-up: the first claim also looks for redeliveries (a transaction), and asyncpg reads the types of
            # a statement's first use; the next look for redeliveries is due in 250 ms (not on a slow machine)
            await broker.settle(_outcomes((await broker._claim(5))[0] + (await broker._claim(5))[0]), storage, [])
            broker._slow_at = now_ms() + 60_000
            logged.clear()
            out, _ = await broker._claim(10)
            assert sum(len(flat) // 4 for _, flat in out) == 10
            assert logged == [CLAIM]
            logged.clear()
            await broker.settle(_outcomes(out), storage, [])
            assert len(logged) == 1 and logged[0].lstrip().startswith("WITH t AS"), logged
            rows = await broker.db.fetch("SELECT status, count(*) AS n FROM records GROUP BY status")
            assert {r["status"]: r["n"] for r in rows} == {"success": 20}  # the 10 queued: their messages alone
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 10

    asyncio.run(go())


def test_a_settle_whose_message_is_gone_still_stores_every_record(schema_url: str) -> None:
    """The settle deletes the messages and writes their records in one statement; a task whose message went
    meanwhile (settled by a worker that took it over, say) is still stored, by an upsert from the envelope the
    worker holds, and its batch-mates are stored once: one record and one ``success`` event each."""

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            await broker.enqueue(_envelopes(4), storage)
            out, _ = await broker._claim(4)
            outcomes = _outcomes(out)
            gone = outcomes[1][0].envelope.uuid
            await broker.db.execute("DELETE FROM messages WHERE uuid = $1", gone)
            await broker.settle(outcomes, storage, [])
            rows = await broker.db.fetch('SELECT uuid, status, "returning", task_name FROM records')
            assert sorted((r["uuid"], r["status"], r["task_name"]) for r in rows) == sorted(
                (o[0].envelope.uuid, "success", "noop") for o in outcomes
            )
            assert all(msgspec.msgpack.decode(r["returning"]) == r["uuid"] for r in rows)
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 0
            page = await storage.events(["default"], None, 100)
            done = [e.uuid for e in page.events if e.status == "success"]
            assert sorted(done) == sorted(o[0].envelope.uuid for o in outcomes)

    asyncio.run(go())


def test_a_task_is_its_message_until_its_settle_writes_its_record_once(schema_url: str) -> None:
    """Schema 5: the enqueue and the claim write no record (the claim's ``process`` mark is on the message), and
    the settle inserts each record once (no update); the query side shows the task all along: ``new``, then
    ``process`` with its worker, then ``success``."""

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            sent = _envelopes(300)
            await broker.enqueue(sent, storage)
            assert (await storage.get(sent[0].uuid, ["default"])).status == "new"
            conn = await broker.db.connect()
            try:
                async with conn.transaction():
                    now = now_ms()
                    rows = await conn.fetch(CLAIM, "hot", now, "default", "c1", now + 30_000, "w1", True, 5, 300)
                    assert len(rows) == 300
                    stats = {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"]) for r in await conn.fetch(
                        "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables"
                        " WHERE relname IN ('records', 'messages')"
                    )}
                    assert stats.get("records", (0, 0)) == (0, 0)
                    assert stats["messages"] == (0, 300)
                running = await storage.get(sent[0].uuid, ["default"])
                assert (running.status, running.worker_id) == ("process", "w1")
                out = [("default", [v for r in rows for v in (r["prio"], r["id"], r["body"], r["deliveries"])])]
                async with conn.transaction():
                    await settle_records(conn, "hot", _outcomes(out), "w1", now_ms(), 60_000, broker.db.channel)
                    stats = {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"]) for r in await conn.fetch(
                        "SELECT relname, n_tup_ins, n_tup_upd FROM pg_stat_xact_user_tables"
                        " WHERE relname = 'records'"
                    )}
                    assert stats["records"] == (300, 0)
            finally:
                await conn.close()
            done = await storage.get(sent[0].uuid, ["default"])
            assert (done.status, done.worker_id) == ("success", "w1")
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 0

    asyncio.run(go())


async def _legacy_enqueue(conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
    """The enqueue of schemas 1 to 4 (a ``new`` record next to each message), as a previous release sent it."""
    now = now_ms()
    blobs = [msgspec.msgpack.encode(e) for e in envelopes]
    await conn.execute(ENQUEUE, "hot", now, *envelope_rows(envelopes, blobs, now, 9), False, True, "qtasks_fast", True)


def test_a_version_4_database_migrates_its_queued_and_running_tasks(schema_url: str, monkeypatch: Any) -> None:
    """Schema 4 kept a ``new`` record next to each message (``process``: with a start time). Migration 5 moves what
    the query side shows onto the messages and drops those records: the tasks read the same before and after
    (queued ``new``, claimed ``process`` with its worker), each once, and then run and end ``success``."""
    schema = schema_url.split("schema=")[1]
    envelopes = _envelopes(6)

    async def make_v4() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            with monkeypatch.context() as m:
                m.setattr(migrations, "MIGRATIONS", [mig for mig in migrations.MIGRATIONS if mig[0] <= 4])
                assert [v for v, _ in await migrations.migrate(conn, schema)] == [1, 2, 3, 4]
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path = "{schema}"')
                await _legacy_enqueue(conn, envelopes)
                now = now_ms()
                old = await conn.fetch(CLAIM, "hot", now, "default", "old", now + 30_000, "w0", True, 5, 2)
                assert len(old) == 2
        finally:
            await conn.close()

    async def run_v5() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            assert await broker.db.fetchval("SELECT count(*) FROM records") == 0
            tasks = [await storage.get(e.uuid, ["default"]) for e in envelopes]
            assert [(t.status, t.worker_id) for t in tasks] == [("process", "w0")] * 2 + [("new", None)] * 4
            counts = await storage.count_tasks(["default"], TaskFilter())
            assert (counts["new"], counts["process"]) == (4, 2)
            page = await storage.list_tasks(["default"], TaskFilter(), 50)
            assert sorted(t.uuid for t in page.tasks) == sorted(e.uuid for e in envelopes)
            outcomes = _outcomes((await broker._claim(10))[0])
            assert len(outcomes) == 4
            await broker.settle(outcomes, storage, [])
            assert await broker.db.fetchval("SELECT count(*) FROM records WHERE status = 'success'") == 4
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 2  # held by "old" until its lease

    asyncio.run(make_v4())
    asyncio.run(run_v5())


def test_a_version_3_database_migrates_and_runs_its_queued_tasks(schema_url: str, monkeypatch: Any) -> None:
    """A database a previous release made (schema 3) with tasks waiting: the new worker migrates it on start and
    claims, runs and stores them through the new statements."""
    schema = schema_url.split("schema=")[1]
    envelopes = _envelopes(20)

    async def make_v3() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            with monkeypatch.context() as m:
                m.setattr(migrations, "MIGRATIONS", [mig for mig in migrations.MIGRATIONS if mig[0] <= 3])
                assert [v for v, _ in await migrations.migrate(conn, schema)] == [1, 2, 3]
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path = "{schema}"')
                await _legacy_enqueue(conn, envelopes)
        finally:
            await conn.close()

    async def run_v4() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            assert [(v, done) for v, _, done in await broker.migrations()] == [
                (v, True) for v, _, _ in migrations.MIGRATIONS
            ]
            outcomes = []
            for _ in range(3):
                outcomes += _outcomes((await broker._claim(10))[0])
            assert len(outcomes) == 20
            await broker.settle(outcomes, storage, [])
            assert await broker.db.fetchval("SELECT count(*) FROM records WHERE status = 'success'") == 20
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 0

    asyncio.run(make_v3())
    asyncio.run(run_v4())


def test_cancel_of_a_task_whose_worker_is_gone_stores_its_record_as_cancel(schema_url: str) -> None:
    """A running task has no record (schema 5); a cancel after its lease ran out (its worker is gone) deletes the
    message, and must write the record first: the task reads ``cancel``, with its worker, not unknown."""

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            sent = _envelopes(1)
            await broker.enqueue(sent, storage)
            assert len(_outcomes((await broker._claim(1))[0])) == 1
            await broker.db.execute("UPDATE messages SET lease_until = 1")  # the lease ran out
            assert await broker.cancel(sent[0].uuid, "default", "stop", storage) == "queued"
            task = await storage.get(sent[0].uuid, ["default"])
            assert task is not None and (task.status, task.worker_id) == ("cancel", "w1")
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 0

    asyncio.run(go())


def test_a_version_5_database_migrates_to_cheaper_indexes_with_its_tasks(schema_url: str, monkeypatch: Any) -> None:
    """Migration 6 gives the key columns the "C" collation (byte comparisons in every index insert of the claim and
    the settle, and in the logs' so joins with records keep their indexes), keeps the finish-time index a btree
    and drops the consumer index: a schema 5 database with finished, running and queued tasks reads the same after
    it (each status, the throughput count), runs the rest, and migrating again does nothing."""
    envelopes = _envelopes(6)

    async def make_v5() -> None:
        with monkeypatch.context() as m:
            m.setattr(migrations, "MIGRATIONS", [mig for mig in migrations.MIGRATIONS if mig[0] <= 5])
            async with _worker(schema_url) as broker:
                storage = broker._storage
                assert storage is not None
                await broker.enqueue(envelopes, storage)
                await broker.settle(_outcomes((await broker._claim(2))[0]), storage, [])
                assert len(_outcomes((await broker._claim(2))[0])) == 2  # running when the database is upgraded
                assert [v for v, _, done in await broker.migrations() if done] == [1, 2, 3, 4, 5]

    async def run_v6() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            assert [v for v, _, done in await broker.migrations() if not done] == []
            db = broker.db
            assert await db.fetchval("SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam"
                                     " WHERE c.oid = 'records_finished'::regclass") == "btree"
            assert await db.fetchval("SELECT to_regclass('messages_consumer')") is None
            assert {r["attname"]: r["collname"] for r in await db.fetch(
                "SELECT attname, collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation"
                " WHERE attrelid = 'records'::regclass AND attname IN ('uuid', 'queue', 'status')")} == {
                "uuid": "C", "queue": "C", "status": "C"}
            assert {r["attrelid"]: r["collname"] for r in await db.fetch(
                "SELECT attrelid::regclass::text, collname FROM pg_attribute a JOIN pg_collation c"
                " ON c.oid = a.attcollation WHERE attname = 'uuid'"
                " AND attrelid = ANY(ARRAY['logs', 'dead_letters', 'cancel_requests']::regclass[])")} == {
                "logs": "C", "dead_letters": "C", "cancel_requests": "C"}
            tasks = [await storage.get(e.uuid, ["default"]) for e in envelopes]
            assert [(t.status, t.worker_id) for t in tasks if t is not None] == [
                ("success", "w1")] * 2 + [("process", "w1")] * 2 + [("new", None)] * 2
            counts = await storage.count_tasks(["default"], TaskFilter())
            assert (counts["success"], counts["process"], counts["new"]) == (2, 2, 2)
            outcomes = _outcomes((await broker._claim(10))[0])  # this consumer's own two again, and the queued two
            assert sorted(o[0].envelope.uuid for o in outcomes) == sorted(e.uuid for e in envelopes[2:])
            await broker.settle(outcomes, storage, [])
            assert await db.fetchval("SELECT count(*) FROM records WHERE status = 'success'") == 6
            assert await db.fetchval("SELECT count(*) FROM messages") == 0
            assert sum(p.success for p in await storage.throughput(["default"])) == 6
            assert await broker.migrate() == []

    asyncio.run(make_v5())
    PgDb.for_url(schema_url)._migrated_pid = 0  # the new release's worker: a process that has not migrated yet
    asyncio.run(run_v6())


async def _v5(schema: str, monkeypatch: Any) -> asyncpg.Connection:
    """A connection to a schema 5 database (``search_path`` set to it), as the previous release made it."""
    conn = await asyncpg.connect(PG_DSN)
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", [mig for mig in migrations.MIGRATIONS if mig[0] <= 5])
        assert [v for v, _ in await migrations.migrate(conn, schema)] == [1, 2, 3, 4, 5]
    await conn.execute(f'SET search_path = "{schema}"')
    return conn


def test_migration_6_gives_the_grants_on_tasks_again(schema_url: str, monkeypatch: Any) -> None:
    """Migration 6 drops and re-makes the view ``tasks``, which drops its grants: a read-only role a user granted
    ``SELECT`` on it (a dashboard, a report) still reads it afterwards, and gets nothing more."""
    schema = schema_url.split("schema=")[1]
    role = f"qtf_ro_{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        conn = await _v5(schema, monkeypatch)
        try:
            await conn.execute(f'CREATE ROLE {role} NOLOGIN; GRANT USAGE ON SCHEMA "{schema}" TO {role};'
                               f" GRANT SELECT ON tasks TO {role}")
            try:
                assert [v for v, _ in await migrations.migrate(conn, schema)] == [6]
                assert await conn.fetchval("SELECT has_table_privilege($1, 'tasks', 'SELECT')", role)
                assert not await conn.fetchval("SELECT has_table_privilege($1, 'tasks', 'INSERT')", role)
                async with conn.transaction():
                    await conn.execute(f"SET LOCAL ROLE {role}")
                    assert await conn.fetchval("SELECT count(*) FROM tasks") == 0
            finally:
                await conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        finally:
            await conn.close()

    asyncio.run(go())


def test_migration_6_names_the_users_views_that_block_it(schema_url: str, monkeypatch: Any) -> None:
    """A user's view over ``records`` or ``tasks`` makes PostgreSQL refuse migration 6's column changes: the
    error names each view and says what to do, nothing is changed, and once they are dropped it applies."""
    schema = schema_url.split("schema=")[1]

    async def go() -> None:
        conn = await _v5(schema, monkeypatch)
        try:
            await conn.execute("CREATE VIEW done AS SELECT uuid, status FROM records;"
                               " CREATE VIEW everything AS SELECT uuid FROM tasks")
            with pytest.raises(asyncpg.PostgresError) as err:
                await migrations.migrate(conn, schema)
            message = str(err.value)
            assert "migration 6 cannot run" in message and "done (view over records)" in message
            assert "everything (view over tasks)" in message
            assert "DROP them" in (err.value.hint or "")  # type: ignore[attr-defined]
            assert [v for v, _ in await migrations.pending(conn, schema)] == [6]
            assert await conn.fetchval("SELECT to_regclass('messages_consumer') IS NOT NULL")  # nothing done
            await conn.execute("DROP VIEW done, everything")
            assert [v for v, _ in await migrations.migrate(conn, schema)] == [6]
        finally:
            await conn.close()

    asyncio.run(go())


def test_deleting_finished_tasks_finds_their_log_lines_by_index(schema_url: str) -> None:
    """``delete_finished`` deletes the log lines of the records it deletes: ``logs.uuid`` and ``records.uuid`` must
    compare in one collation for ``logs_task`` to find them by uuid (else it reads every log line of the app)."""
    schema = schema_url.split("schema=")[1]

    async def go() -> None:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await migrations.migrate(conn, schema)
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path = "{schema}"; SET LOCAL enable_seqscan = off')
                plan = "\n".join(r[0] for r in await conn.fetch(
                    "EXPLAIN " + DELETE_FINISHED_LOGS, "hot", ["default"]))
        finally:
            await conn.close()
        # the uuid is the index's key, not a filter on every log line of the app (a join filter in two collations)
        assert "logs_task" in plan and "uuid = records.uuid)" in plan and "Join Filter" not in plan, plan

    asyncio.run(go())
