"""A PostgreSQL producer's faults (issue 15): a lock another client holds on our tables ends in a bounded wait and a
one-line ``BrokerUnavailable`` (``lock_timeout``, default 10 s, ``?lock_timeout=`` in the URL), a worker waits such
a lock out instead of stopping, the first call after a server restart succeeds (a pooled connection the server
closed while idle is replaced before use), and an enqueue whose connection dies while it runs says that its fate
is unknown instead of inviting a blind retry."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from conftest import PG_DSN, PrivatePostgres, ProcessHarness

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.exceptions import BrokerUnavailable, ConfigError


def _schema(url: str) -> str:
    return dict(p.split("=", 1) for p in urlsplit(url).query.split("&") if p)["schema"]


def _app(name: str, url: str) -> AsyncQueueTasks:
    app = AsyncQueueTasks(name, broker_url=url)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


@asynccontextmanager
async def _locked(table: str) -> AsyncIterator[asyncpg.Connection]:
    """Another client holding ``table`` (schema-qualified) in ACCESS EXCLUSIVE mode until the block ends."""
    conn = await asyncpg.connect(PG_DSN)
    try:
        async with conn.transaction():
            await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield conn
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_a_producer_behind_another_clients_lock_gets_a_one_line_error_then_goes_on(
    pg_url: str, app_name: str
) -> None:
    app = _app(app_name, f"{pg_url}&lock_timeout=300ms")
    await app.add_task("noop")  # connected and migrated before the lock
    async with _locked(f'"{_schema(pg_url)}".messages'):
        t0 = time.monotonic()
        with pytest.raises(BrokerUnavailable) as caught:
            await app.add_task("noop")
        waited = time.monotonic() - t0
    text = str(caught.value)
    assert waited < 5, f"the producer waited {waited:.1f} s behind the lock"
    assert "\n" not in text and "lock" in text and "lock_timeout=300ms" in text and "retry" in text, text
    task = await app.add_task("noop")  # the lock is gone: the same client goes on
    got = await app.get(task.uuid)
    assert got is not None and got.status == "new"
    await app.close()


@pytest.mark.asyncio
async def test_a_statement_timeout_in_the_url_bounds_a_statement_with_a_one_line_error(
    pg_url: str, app_name: str
) -> None:
    app = _app(app_name, f"{pg_url}&lock_timeout=0&statement_timeout=300ms")
    await app.add_task("noop")
    async with _locked(f'"{_schema(pg_url)}".messages'):
        with pytest.raises(BrokerUnavailable) as caught:
            await app.add_task("noop")
    text = str(caught.value)
    assert "\n" not in text and "statement_timeout=300ms" in text and "retry" in text, text
    await app.close()


@pytest.mark.asyncio
async def test_every_pooled_connection_waits_for_a_lock_at_most_the_default_or_the_urls_lock_timeout(
    pg_url: str, app_name: str
) -> None:
    for url, want in ((pg_url, "10s"), (f"{pg_url}&lock_timeout=2500ms", "2500ms")):
        app = _app(app_name, url)
        db = app.broker.db
        for durable in (True, False):  # the producer's pool and the worker's claim-and-settle pool
            async with db.acquire(durable) as conn:
                assert await conn.fetchval("SHOW lock_timeout") == want, (url, durable)
        await app.close()


def test_a_lock_timeout_that_is_not_a_duration_is_one_config_error_line(pg_url: str, app_name: str) -> None:
    with pytest.raises(ConfigError, match=r"lock_timeout='soon' .* is not a duration: write it like lock_timeout=10s"):
        QueueTasks(app_name, broker_url=f"{pg_url}&lock_timeout=soon").add_task("noop")


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [1, 600])  # one statement; a batch big enough for COPY (records.COPY_MIN)
async def test_an_enqueue_whose_connection_dies_while_it_runs_says_its_fate_is_unknown(
    pg_url: str, app_name: str, size: int
) -> None:
    app = _app(app_name, f"{pg_url}&lock_timeout=0")  # no limit: the enqueue waits behind the lock
    await app.add_task("noop")
    table = f'"{_schema(pg_url)}".messages'
    async with _locked(table) as holder:
        sending = asyncio.ensure_future(app.add_tasks([("noop", (), {})] * size))
        for _ in range(200):
            pids = [
                r["pid"]
                for r in await holder.fetch(
                    f"SELECT pid FROM pg_locks WHERE relation = '{table}'::regclass AND NOT granted"
                )
            ]
            if pids:
                break
            await asyncio.sleep(0.05)
        assert pids, "the enqueue never waited for the lock"
        await holder.execute("SELECT pg_terminate_backend(p) FROM unnest($1::int[]) AS p", pids)
        with pytest.raises(BrokerUnavailable) as caught:
            await sending
    text = str(caught.value)
    assert "\n" not in text and "may or may not be stored" in text and "app.get(" in text, text
    await app.add_task("noop")  # the next call gets a live connection
    await app.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_first_call_after_a_server_restart_succeeds(private_pg: PrivatePostgres, app_name: str, mode: str) -> None:
    async def run() -> None:
        app = _app(app_name, private_pg.url)
        before = await app.add_task("noop")
        private_pg.stop(mode)  # the pool's idle connections are closed by the server while the loop does not run
        private_pg.start()
        after = await app.add_task("noop")  # no BrokerUnavailable: the dead pooled connection is replaced
        for task in (before, after):
            got = await app.get(task.uuid)
            assert got is not None and got.status == "new"
        await app.close()

    asyncio.run(run())
    sync = QueueTasks(app_name, broker_url=private_pg.url)
    sync.task(name="noop")(lambda: None)
    first = sync.add_task("noop")
    private_pg.stop(mode)
    private_pg.start()
    assert sync.add_task("noop").uuid != first.uuid
    sync.close()


def test_a_worker_waits_out_a_lock_longer_than_its_lock_timeout(
    harness: ProcessHarness, private_pg: PrivatePostgres
) -> None:
    url = f"{private_pg.url}?lock_timeout=200ms"
    proc = harness.start(url, "--concurrency", "10", processes=2)
    harness.wait_ready(proc)
    m: Any = harness.producer(url)
    first = m.app.add_tasks([m.slow.s(0.05, f"t{i}") for i in range(600)])  # 3 s of work for 20 slots: busy at the lock
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        async def lock() -> None:
            conn = await asyncpg.connect(private_pg.url)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE qtasks_fast.messages IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.05)
            finally:
                await conn.close()

        asyncio.run(lock())

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        with pytest.raises(BrokerUnavailable, match="lock_timeout=200ms"):
            m.app.add_tasks([m.add.s(i, 1) for i in range(10)])
        time.sleep(2.0)  # the worker's claims and settles run into the lock timeout meanwhile
    finally:
        release.set()
        holder.join(10)
    late = m.app.add_tasks([m.add.s(i, 1) for i in range(300)])
    deadline = time.monotonic() + 60
    sent = first + late
    while True:
        done = [m.app.get(t.uuid) for t in sent]
        if all(t is not None and t.status == "success" for t in done):
            break
        assert time.monotonic() < deadline, harness.log(proc)[-3000:]
        time.sleep(0.2)
    assert [t.returning for t in done] == [f"t{i}" for i in range(600)] + [i + 1 for i in range(300)]
    log = harness.log(proc)
    assert "lock_timeout=200ms" in log, "the workers never ran into the lock"
    assert proc.poll() is None and "exited with code" not in log and "Traceback" not in log, log[-3000:]
    m.app.close()


@pytest.mark.asyncio
async def test_a_uuid_sent_again_starts_over_in_a_batch_of_new_ones(pg_url: str, app_name: str) -> None:
    """A queued task is its message alone (schema 5); a uuid sent again after it finished starts over: its old
    record goes in the enqueue's statement, so every task of the batch reads ``new``, each once."""
    from qtasks_fast.schemas import Envelope

    app = _app(app_name, pg_url)
    old = Envelope(uuid=str(uuid.uuid4()), task_name="noop", queue="default", created_at=time.time())
    await app.broker.enqueue([old], app.storage)
    db = app.broker.db
    assert await db.fetchval("SELECT count(*) FROM records WHERE app = $1", app_name) == 0
    await db.execute(  # it ran: a final record, no message
        "WITH m AS (DELETE FROM messages WHERE uuid = $1 RETURNING body) INSERT INTO records (uuid, app, queue,"
        " task_name, status, envelope, created, updated, finished, \"returning\") SELECT $1, $2, 'default', 'noop',"
        " 'success', body, 1, 1, 1, '\\x01' FROM m",
        old.uuid,
        app_name,
    )
    assert (await app.storage.get(old.uuid, ["default"])).status == "success"
    fresh = [
        Envelope(uuid=str(uuid.uuid4()), task_name="noop", queue="default", created_at=time.time()) for _ in range(3)
    ]
    await app.broker.enqueue([fresh[0], old, *fresh[1:]], app.storage)
    assert await db.fetchval("SELECT count(*) FROM records WHERE app = $1", app_name) == 0
    rows = await db.fetch('SELECT uuid, status, "returning", finished FROM tasks WHERE app = $1', app_name)
    assert sorted((r["uuid"], r["status"], r["returning"], r["finished"]) for r in rows) == sorted(
        (e.uuid, "new", None, None) for e in [old, *fresh]
    )
    sent = await db.fetch("SELECT uuid, count(*) AS n FROM messages WHERE app = $1 GROUP BY uuid", app_name)
    assert {r["uuid"]: r["n"] for r in sent} == {old.uuid: 1, **{e.uuid: 1 for e in fresh}}
    await app.close()


async def _records_read(conn: asyncpg.Connection, schema: str) -> int:
    """Scans of ``records`` by the current transaction so far (``pg_stat_xact_user_tables``)."""
    return int(await conn.fetchval(
        "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) FROM pg_stat_xact_user_tables"
        " WHERE schemaname = $1 AND relname = 'records'", schema))


@pytest.mark.asyncio
async def test_a_bulk_enqueue_of_uuids_it_minted_reads_no_record_and_others_still_start_over(
    pg_url: str, app_name: str
) -> None:
    """``add_tasks`` and ``add_task`` mint their uuids (``Minted``): none can have a record, so the statement reads
    ``records`` not at all (the old-record delete was a third of its server CPU on a large table). A batch whose
    uuids come from elsewhere (a plain list, a middleware's uuid) still looks, and a uuid sent again that way
    starts over, in a batch or alone."""
    from qtasks_fast.middleware import Middleware
    from qtasks_fast.schemas import Envelope, Minted

    app = _app(app_name, pg_url)
    await app.add_task("noop")  # connected and migrated
    minted, _ = app.build_many([("noop", (), {})] * 3)
    assert isinstance(minted, Minted)
    plain = [Envelope(uuid=str(uuid.uuid4()), task_name="noop", queue="default", created_at=time.time())]
    async with app.broker.db.tx() as conn:
        before = await _records_read(conn, _schema(pg_url))
        await app.broker.insert(conn, minted, False, True)
        assert await _records_read(conn, _schema(pg_url)) == before, before
        await app.broker.insert(conn, plain, False, True)
        assert await _records_read(conn, _schema(pg_url)) > 0
    db = app.broker.db
    old = plain[0].uuid
    await db.execute(  # the plain one ran: a final record, no message
        "WITH m AS (DELETE FROM messages WHERE uuid = $1 RETURNING body) INSERT INTO records (uuid, app, queue,"
        " task_name, status, envelope, created, updated, finished, \"returning\") SELECT $1, $2, 'default', 'noop',"
        " 'success', body, 1, 1, 1, '\\x01' FROM m", old, app_name)

    reuse = [old]

    class Reuse(Middleware):  # the first call of the batch is sent again under the old uuid
        def before_enqueue(self, app: Any, envelope: Envelope) -> Envelope:
            if reuse:
                envelope.uuid = reuse.pop()
            return envelope

    app.add_middleware(Reuse())
    again, fresh = await app.add_tasks([("noop", (), {}), ("noop", (), {})])
    assert str(again.uuid) == old and str(fresh.uuid) != old
    got = await app.get(old)
    assert got is not None and got.status == "new" and got.returning is None
    await db.execute(  # it ran again, and failed
        "WITH m AS (DELETE FROM messages WHERE uuid = $1 RETURNING body) INSERT INTO records (uuid, app, queue,"
        " task_name, status, envelope, created, updated, finished) SELECT $1, $2, 'default', 'noop', 'error', body,"
        " 1, 1, 1 FROM m", old, app_name)
    reuse.append(old)
    assert str((await app.add_task("noop")).uuid) == old  # one call, sent again the same way
    got = await app.get(old)
    assert got is not None and got.status == "new"
    others = [e.uuid for e in minted] + [str(fresh.uuid)]
    got_all = await asyncio.gather(*(app.get(u) for u in others))
    assert [t.status if t is not None else None for t in got_all] == ["new"] * len(others)
    await app.close()


@pytest.mark.asyncio
async def test_a_batch_over_two_queues_feeds_each_queue_its_new_events_in_batch_order(
    pg_url: str, app_name: str
) -> None:
    """The enqueue's feed rows are built by the producer (one JSON text per queue): every task of the batch is one
    ``new`` event of its own queue, in the order sent, with its name as stored (odd characters included)."""
    from qtasks_fast.schemas import Envelope, Minted

    app = _app(app_name, pg_url)
    names = ["noop", 'qu"ote\\\x00', "ünï", "noop"]
    sent = Minted(Envelope(uuid=str(uuid.uuid4()), task_name=n, queue=q, created_at=time.time())
                  for n, q in zip(names, ["a", "b", "a", "b"], strict=True))
    await app.broker.enqueue(sent, app.storage)
    # the feed shows a committed batch once every transaction older than it has ended (feed.py): on a server
    # shared with other clients that can take a moment, so read until the batch is there (or 10 s)
    deadline = time.monotonic() + 10
    while True:
        page = await app.storage.events(["a", "b"], None, 100)
        if len(page.events) >= len(sent) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    got = [(e.queue, e.uuid, e.task_name, e.status) for e in page.events]
    want = [(e.queue, e.uuid, e.task_name.replace("\x00", "\\x00"), "new") for e in sent]
    assert sorted(got) == sorted(want)
    assert [g for g in got if g[0] == "a"] == [w for w in want if w[0] == "a"]
    assert [g for g in got if g[0] == "b"] == [w for w in want if w[0] == "b"]
    await app.close()


async def _queued(db: Any, app_name: str) -> list[tuple[Any, ...]]:
    """The app's messages as a claim and the query side see them, in claim order (prio, id), ids left out."""
    rows = await db.fetch(
        "SELECT uuid, queue, prio, task_name, body, created, awaited, restart_of, consumer, deliveries, worker_id,"
        " started FROM messages WHERE app = $1 ORDER BY prio, id", app_name)
    return [tuple(r) for r in rows]


@pytest.mark.asyncio
async def test_a_big_minted_batch_is_queued_and_fed_as_a_small_one_in_order_and_all_or_nothing(
    pg_url: str, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A minted batch of ``COPY_MIN`` tasks or more goes by binary COPY plus one feed statement: the messages (FIFO
    ids, every column the query side reads), the ``new`` feed events in batch order and the state afterwards are
    those of the one-statement enqueue; inside a caller's transaction nothing of it stays after a rollback, and a
    delayed task among them still waits in ``delayed``."""
    from qtasks_fast.backends.postgres import records
    from qtasks_fast.schemas import META_RESTART_OF, Envelope, Minted

    app = _app(app_name, pg_url)
    await app.add_task("noop")  # connected and migrated
    db = app.broker.db
    await db.execute("DELETE FROM messages WHERE app = $1", app_name)
    size = records.COPY_MIN + 3

    def batch(delay_one: bool = False) -> Minted:
        now = time.time()
        return Minted(Envelope(uuid=str(uuid.uuid4()), task_name=("noop", "ünï")[i % 2], queue=("a", "b")[i % 3 == 0],
                               priority=i % 4, created_at=now - i, meta={META_RESTART_OF: "r"} if i == 5 else {},
                               eta=now + 600 if delay_one and i == 7 else 0.0) for i in range(size))

    shown = []
    cursor = None
    for copy_min in (records.COPY_MIN, 10**9):  # by COPY, then as the one statement
        monkeypatch.setattr(records, "COPY_MIN", copy_min)
        sent = batch()
        await app.broker.enqueue(sent, app.storage, wait=True)
        got = await _queued(db, app_name)
        want = [(e.uuid, e.queue, e.priority, e.task_name, round(e.created_at * 1000))
                for _, e in sorted(enumerate(sent), key=lambda ie: (ie[1].priority, ie[0]))]  # claim order
        assert [(g[0], g[1], g[2], g[3], g[5]) for g in got] == want
        assert all(g[6] is True and g[8] is None and g[9] == 0 and g[10] is None and g[11] is None for g in got)
        assert [g[7] for g in got if g[0] == sent[5].uuid] == ["r"]
        events: list[Any] = []
        ours = {s.uuid for s in sent}
        deadline = time.monotonic() + 10
        while len(events) < size and time.monotonic() < deadline:  # the feed pages on from where it was read
            page = await app.storage.events(["a", "b"], cursor, 1000)
            events += [e for e in page.events if e.uuid in ours]
            cursor = page.cursor
            await asyncio.sleep(0.05)
        for q in ("a", "b"):
            assert [(e.uuid, e.task_name, e.status) for e in events if e.queue == q] == [
                (s.uuid, s.task_name, "new") for s in sent if s.queue == q]
        task = await app.storage.get(sent[1].uuid, ["a", "b"])
        assert task is not None and task.status == "new" and task.task_name == "ünï"
        shown.append([g[1:] for g in got])
        await db.execute("DELETE FROM messages WHERE app = $1", app_name)
    assert [s[:3] + s[5:] for s in shown[0]] == [s[:3] + s[5:] for s in shown[1]]  # body and created: per batch

    monkeypatch.setattr(records, "COPY_MIN", records.COPY_MIN)
    rolled = batch()
    with pytest.raises(RuntimeError):
        async with db.tx() as conn:
            await app.broker.insert(conn, rolled, False, True)
            assert len(await conn.fetch("SELECT 1 FROM messages WHERE app = $1", app_name)) == size
            raise RuntimeError("the caller's transaction fails")
    assert await _queued(db, app_name) == []
    delayed = batch(delay_one=True)
    async with db.tx() as conn:
        await app.broker.insert(conn, delayed, False, True)
    assert len(await _queued(db, app_name)) == size - 1
    assert await db.fetchval("SELECT uuid FROM delayed WHERE app = $1", app_name) == delayed[7].uuid
    await app.close()


async def _adding_app(app_name: str, pg_url: str) -> AsyncQueueTasks:
    """An app with an ``add`` task, connected and migrated."""
    app = _app(app_name, pg_url)

    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    await app.add_task("noop")
    return app


@pytest.mark.asyncio
@pytest.mark.parametrize("client", ["async", "sync"])
async def test_a_bulk_enqueue_handed_over_in_parts_is_one_batch_in_order_and_all_or_nothing(
    pg_url: str, app_name: str, client: str
) -> None:
    """A big ``add_tasks`` reaches the broker in parts (``Broker.part_sizes``, ``enqueue_parts``: each part sent while
    the next is built): every task queued once, FIFO in call order, its ``new`` events in order, the records handed
    back those of the queued tasks; a call that fails while a later part is built (a bad argument) raises what the
    same call alone raises and leaves nothing queued, and the app goes on. The same through the sync client."""
    app = await _adding_app(app_name, pg_url)
    db = app.broker.db
    await db.execute("DELETE FROM messages WHERE app = $1", app_name)
    size = 1000
    assert len(app.broker.part_sizes(size)) > 1  # what this test is about: the batch goes in parts
    sync = QueueTasks(app_name, broker_url=pg_url)
    sync.task(name="add")(lambda a, b: a + b)

    async def add_tasks(calls: list[Any]) -> list[Any]:
        if client == "sync":
            return await asyncio.to_thread(sync.add_tasks, calls)
        return await app.add_tasks(calls)

    cursor = (await app.storage.events(["default"], None, 1)).cursor
    sent = await add_tasks([("add", (i, 1), {}) for i in range(size)])
    assert [t.status for t in sent] == ["new"] * size
    got = await db.fetch("SELECT uuid, task_name, body FROM messages WHERE app = $1 ORDER BY id", app_name)
    assert [r["uuid"] for r in got] == [str(t.uuid) for t in sent]  # each once, ids in call order
    assert {r["task_name"] for r in got} == {"add"}
    events: list[Any] = []
    deadline = time.monotonic() + 10
    while len(events) < size and time.monotonic() < deadline:
        page = await app.storage.events(["default"], cursor, 1000)
        events += [e for e in page.events if e.status == "new"]
        cursor = page.cursor
    assert [e.uuid for e in events] == [str(t.uuid) for t in sent]
    task = await app.get(sent[-1].uuid)
    assert task is not None and task.status == "new" and task.args == (size - 1, 1)

    await db.execute("DELETE FROM messages WHERE app = $1", app_name)
    bad = ("add", (1,), {})  # one argument short
    with pytest.raises(Exception) as alone:
        await add_tasks([bad])
    calls = [("add", (i, 1), {}) for i in range(size)]
    calls[-1] = bad  # in the last part: the parts before it are on the server by then
    with pytest.raises(type(alone.value)) as caught:
        await add_tasks(calls)
    assert str(caught.value) == str(alone.value)
    assert await db.fetch("SELECT uuid FROM messages WHERE app = $1", app_name) == []
    assert len(await add_tasks(calls[:-1])) == size - 1  # the connection is usable: nothing left half-done
    assert len(await db.fetch("SELECT uuid FROM messages WHERE app = $1", app_name)) == size - 1
    sync.close()
    await app.close()


@pytest.mark.asyncio
async def test_a_big_add_tasks_cut_short_by_a_timeout_raises_the_timeout_and_stores_all_or_nothing(
    pg_url: str, app_name: str
) -> None:
    """``asyncio.wait_for(app.add_tasks(...), t)`` whose time runs out while the batch's parts are on the server
    raises the caller's ``TimeoutError`` (not the driver's error about the rollback it could not send), the batch
    is stored whole or not at all, and the app goes on."""
    app = await _adding_app(app_name, pg_url)
    db = app.broker.db
    size = 3000
    for timeout in (0.002, 0.005, 0.01, 0.02, 0.04, 0.08):
        await db.execute("DELETE FROM messages WHERE app = $1", app_name)
        try:
            await asyncio.wait_for(app.add_tasks([("add", (i, 1), {}) for i in range(size)]), timeout)
        except asyncio.TimeoutError:
            pass
        stored = await db.fetchval("SELECT count(*) FROM messages WHERE app = $1", app_name)
        assert stored in (0, size), (timeout, stored)
    assert (await app.add_task("add", 1, 2)).status == "new"  # the app goes on
    await app.close()
