"""The PostgreSQL worker's hot path (issue 15): what a busy worker's claim and settle cost the server, and that the
cheaper path keeps every guarantee: one statement per claim and per settle, a record gone before its settle is
still stored (and its message acked only then), the claim's record update stays in its page (HOT, no index
entry), and a database of schema version 3 migrates with its queued tasks and runs them."""

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
from qtasks_fast.backends.postgres import migrations
from qtasks_fast.backends.postgres.broker import CLAIM, PgBroker
from qtasks_fast.backends.postgres.db import now_ms
from qtasks_fast.backends.postgres.records import enqueue_rows
from qtasks_fast.backends.postgres.storage import PgStorage
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
            assert {r["status"]: r["n"] for r in rows} == {"success": 20, "new": 10}
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 10

    asyncio.run(go())


def test_a_settle_whose_record_is_gone_stores_it_and_acks_only_then(schema_url: str) -> None:
    """The settle updates records in place; a task whose record was removed meanwhile (a purge, an expiry) is still
    stored, by an insert, and its batch-mates are stored once: every message acked, one ``success`` event each."""

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            await broker.enqueue(_envelopes(4), storage)
            out, _ = await broker._claim(4)
            outcomes = _outcomes(out)
            gone = outcomes[1][0].envelope.uuid
            await broker.db.execute("DELETE FROM records WHERE uuid = $1", gone)
            await broker.settle(outcomes, storage, [])
            rows = await broker.db.fetch('SELECT uuid, status, "returning" FROM records')
            assert sorted((r["uuid"], r["status"]) for r in rows) == sorted(
                (o[0].envelope.uuid, "success") for o in outcomes
            )
            assert all(msgspec.msgpack.decode(r["returning"]) == r["uuid"] for r in rows)
            assert await broker.db.fetchval("SELECT count(*) FROM messages") == 0
            page = await storage.events(["default"], None, 100)
            done = [e.uuid for e in page.events if e.status == "success"]
            assert sorted(done) == sorted(o[0].envelope.uuid for o in outcomes)

    asyncio.run(go())


def test_the_claims_record_update_stays_in_its_page(schema_url: str) -> None:
    """Marking a claimed task's record ``process`` changes no indexed column; with room left in its page it is a
    HOT update (no new index entry in the records' five indexes). With 20 % free (schema 2) only about a third of
    a batch's updates found room; schema 4 leaves half of each page free: every one of them does."""

    async def go() -> None:
        async with _worker(schema_url) as broker:
            storage = broker._storage
            assert storage is not None
            for _ in range(3):
                await broker.enqueue(_envelopes(100), storage)
            conn = await broker.db.connect()
            try:
                async with conn.transaction():
                    now = now_ms()
                    rows = await conn.fetch(CLAIM, "hot", now, "default", "c1", now + 30_000, "w1", True, 5, 300)
                    assert len(rows) == 300
                    stats = await conn.fetchrow(
                        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
                        " WHERE relid = to_regclass('records')"
                    )
            finally:
                await conn.close()
            assert (stats["n_tup_upd"], stats["n_tup_hot_upd"]) == (300, 300)

    asyncio.run(go())


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
                await enqueue_rows(
                    conn,
                    "hot",
                    envelopes,
                    [msgspec.msgpack.encode(e) for e in envelopes],
                    False,
                    True,
                    now_ms(),
                    9,
                    "qtasks_fast",
                )
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
