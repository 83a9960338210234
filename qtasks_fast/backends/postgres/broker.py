"""The PostgreSQL broker's hot path: enqueue, fetch (batch claim), settle, renew.

A claim is one transaction: due delayed messages are promoted, redeliveries (this slot's own messages after a
restart, expired leases of other consumers, messages due for their last delivery) are looked at one by one in
Python, and the rest of the free capacity is claimed in one statement, ``SELECT ... FOR UPDATE SKIP LOCKED``
sized to it, which also marks the records ``process`` and writes the feed. Concurrent fetchers skip each
other's locked rows instead of queueing behind them.

An idle fetch waits on ``LISTEN`` (:mod:`~qtasks_fast.backends.postgres.db`): every enqueue notifies
``q:<app>:<queue>`` in its own statement, so a blocked worker wakes at the commit, with no polling; it also wakes
by itself when the next delayed message is due or the next foreign lease runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery, Outcome
from qtasks_fast.abc.capabilities import (
    Cancel,
    Claims,
    DeadLetters,
    Delays,
    FlushAll,
    Limits,
    Purge,
    QueueStatistics,
    TaskTable,
    TransactionalEnqueue,
    UniqueKeys,
    WorkerRegistry,
)
from qtasks_fast.backends._local import has_unique
from qtasks_fast.backends.postgres.audit import PgAudit
from qtasks_fast.backends.postgres.control import PgControl
from qtasks_fast.backends.postgres.db import Listener, PgDb, at_boundary, listen, now_ms, wait_set
from qtasks_fast.backends.postgres.migrations import Migrating
from qtasks_fast.backends.postgres.records import (
    FEED,
    claim_unique,
    copy_stream,
    enqueue_rows,
    pg_text,
    release_unique,
    settle_records,
    stream_sizes,
    unclaim_unique,
)
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.schemas import Envelope, Minted, releases_unique, unique_owner
from qtasks_fast.url import redact

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

_FAR = 1 << 62
#: the longest an idle fetch that cannot LISTEN sleeps without claiming
IDLE_RECHECK = 5.0
#: ms between two looks for redeliveries (others' expired leases, ready last attempts) by a busy worker; a
#: takeover, a recovery or a last attempt this worker passed over look at once
SLOW_EVERY_MS = 250
PROMOTE = ("WITH d AS (DELETE FROM delayed WHERE id IN (SELECT id FROM delayed WHERE app = $1"
           " AND queue = ANY($2::text[]) AND due <= $3 FOR UPDATE SKIP LOCKED)"
           " RETURNING queue, prio, uuid, body, due, id, task_name, created, awaited, restart_of)"
           " INSERT INTO messages (app, queue, prio, uuid, body, task_name, created, awaited, restart_of)"
           " SELECT $1, queue, prio, uuid, body, task_name, created, awaited, restart_of FROM d ORDER BY due, id")
#: hands out the messages of CTE ``c`` ($3.. are the CTE's), marks them running (worker, start time: a task has no
#: record until its settle, migration 5) and writes the feed (the ready messages' claim, ``claim_ready``, is the
#: same statement with ``c`` = the next ready ones: see migration 6). The rows are updated by primary key
#: (``= ANY(ARRAY(...))``): an ``UPDATE ... FROM c`` was planned as a hash join over a scan of the whole queue
_TAKE = ("WITH {c}, m AS (UPDATE messages SET consumer = $4, lease_until = $5, deliveries = messages.deliveries + 1,"
         " worker_id = $6, started = $2 WHERE messages.id = ANY(ARRAY(SELECT c.id FROM c))"
         " RETURNING messages.id, messages.prio,"
         " messages.uuid, messages.body, messages.deliveries, messages.queue, messages.task_name,"
         " messages.worker_id),"
         " r AS (SELECT queue, uuid, task_name, 'process' AS status, worker_id FROM m"
         " WHERE $7 AND task_name IS NOT NULL), "
         + FEED + " SELECT id, prio, body, deliveries FROM m ORDER BY prio, id")
TAKE = _TAKE.format(c="c AS (SELECT unnest($3::bigint[]) AS id)")
#: the ready messages' claim in ONE round trip (no BEGIN, PROMOTE, COMMIT: a busy worker's usual fetch), migration
#: 4's function: promotes the queue's due delayed messages, then takes up to $9 ready ones (``FOR UPDATE SKIP
#: LOCKED``, fewer than $8 deliveries), marks their records ``process`` and writes the feed, in the call's own
#: transaction (or the caller's)
CLAIM = "SELECT id, prio, body, deliveries FROM claim_ready($1, $2, $3, $4, $5, $6, $7, $8, $9)"

#: where a caller's connection points: its search path (put back after), database, server and our schema's state
_WHERE = ("SELECT current_setting('search_path') AS path, current_database() AS db,"
          " (SELECT system_identifier FROM pg_control_system()) AS sid,"
          " to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL AS migrated")
#: redeliveries: this slot's own messages (takeover), others' expired leases, ready ones due a last delivery
SLOW = ("SELECT id, prio, uuid, body, deliveries FROM messages WHERE app = $1 AND queue = $2"
        " AND ((consumer = $4 AND id = ANY($5::bigint[]))"
        " OR (consumer IS NOT NULL AND consumer <> $4 AND lease_until < $3) OR (consumer IS NULL AND deliveries >= $6))"
        " ORDER BY prio, id LIMIT $7 FOR UPDATE SKIP LOCKED")


@at_boundary
class PgBroker(PgControl, PgAudit, Migrating, Delays, UniqueKeys, Cancel, DeadLetters, Purge, FlushAll, Limits,
               Claims, TaskTable, WorkerRegistry, QueueStatistics, TransactionalEnqueue):
    """Broker on a PostgreSQL schema; pairs with ``PgStorage`` on the same database for fused writes."""

    def __init__(self, url: str, *, app_name: str = "QueueTasks", db: PgDb | None = None, priority_levels: int = 10,
                 lease_seconds: float = 30.0, max_deliveries: int = 5, result_ttl: float = 86400.0) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.url = url
        self.db = db or PgDb.for_url(url)
        #: the messages this consumer name held when it started (a predecessor's): handed out again at once
        self._inherited: set[int] = set()
        #: after a failed fetch: the deliveries the worker still holds (the others of this consumer are taken back)
        self._recover: set[int] | None = None
        #: the deliveries the worker held at its last failed fetch, until settled: a claim forgotten by a server
        #: crash (``synchronous_commit = off``) hands them out again, and the worker must not run them twice
        self._held: set[int] = set()
        #: when (ms) the claim next looks for redeliveries (see :data:`SLOW_EVERY_MS`)
        self._slow_at = 0
        self._closed = False
        #: the idle fetch's LISTEN registration, kept across fetches (see :meth:`fetch`)
        self._woken = asyncio.Event()
        self._lst: Listener | None = None
        self._stops: list[Callable[[], None]] = []
        #: ms before which, with no NOTIFY, a claim would find nothing (0: claim on the next fetch)
        self._idle_until = 0
        self._wakers: set[asyncio.Event] = set()

    def fused(self, storage: Storage | None) -> bool:
        from qtasks_fast.backends.postgres.storage import PgStorage

        return isinstance(storage, PgStorage) and storage.app_name == self.app_name and storage.db is self.db

    # ---------------------------------------------------------------- producer
    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> dict[str, str]:
        if self.fused(storage):
            if has_unique(envelopes):  # the keys and the batch commit together
                async with self.db.tx() as conn:
                    return await self.insert(conn, envelopes, wait, True)
            async with self._enqueuing(envelopes) as conn:  # one statement, its own transaction (see enqueue_rows)
                return await self.insert(conn, envelopes, wait, True)
        skipped: dict[str, str] = {}
        if has_unique(envelopes):
            async with self.db.tx() as conn:
                skipped = await claim_unique(conn, self.app_name, envelopes, now_ms(), self.unique_ttl)
            envelopes = [e for e in envelopes if e.uuid not in skipped]
        if envelopes:
            try:
                await storage.create(envelopes, wait)  # records before any worker can fetch the message
                async with self.db.tx() as conn:
                    await self.insert(conn, envelopes, wait, False, unique=False)
            except BaseException:
                # the keys were claimed in a transaction of their own: give them back, or a retry of this very
                # call would be skipped as a duplicate of a task that never existed (for the key's whole ttl)
                if has_unique(envelopes):
                    await self._release_claimed(envelopes)
                raise
        return skipped

    def part_sizes(self, count: int) -> Sequence[int]:
        return stream_sizes(count)

    async def enqueue_parts(self, parts: Iterable[Sequence[Envelope]], storage: Storage) -> None:
        """One batch handed over in parts, one transaction (:func:`copy_stream`): each part goes by COPY as it
        comes, and the next is built while the server stores the previous one. Another app's storage: whole."""
        if not self.fused(storage):
            return await super().enqueue_parts(parts, storage)
        sent: list[Envelope] = []  # for the error of a lost connection

        def seen() -> Iterator[Sequence[Envelope]]:
            for part in parts:
                sent.extend(part)
                yield part

        async with self._enqueuing(sent) as conn, conn.transaction():
            await copy_stream(conn, self.app_name, seen(), False, now_ms(), self.priority_levels - 1, self.db.channel)
        return None

    @asynccontextmanager
    async def _enqueuing(self, envelopes: Sequence[Envelope]) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection for a fused enqueue: one lost with the batch sent makes its fate unknown."""
        async with self.db.acquire() as conn:
            try:
                yield conn
            except (asyncpg.ConnectionDoesNotExistError, ConnectionError) as exc:
                raise self._fate_unknown(envelopes, exc) from exc
            except asyncpg.InterfaceError as exc:
                # a batch sent by COPY runs in a transaction, which asyncpg then cannot end on the lost
                # connection: the loss is the cause (during the COMMIT it is raised as it is, above)
                lost = exc.__context__
                if isinstance(lost, (asyncpg.ConnectionDoesNotExistError, ConnectionError)):
                    raise self._fate_unknown(envelopes, lost) from exc
                raise

    def _fate_unknown(self, envelopes: Sequence[Envelope], exc: BaseException) -> BrokerUnavailable:
        """The connection died with the enqueue sent: it may have committed, and sending the batch again could
        queue each task twice (a connection already dead before the send is replaced first: ``PgDb.acquire``)."""
        first = envelopes[0].uuid if envelopes else "?"
        return BrokerUnavailable(
            f"PostgreSQL {redact(self.db.url)}: the connection was lost while {len(envelopes)} task(s) were being "
            f"enqueued ({type(exc).__name__}: {exc}), so they may or may not be stored: look them up "
            f"(app.get('{first}')) before sending them again")

    async def _release_claimed(self, envelopes: Sequence[Envelope]) -> None:
        try:
            async with self.db.tx() as conn:
                await unclaim_unique(conn, self.app_name, envelopes)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):  # the database is gone too: the ttl ends it
            pass

    async def insert(self, conn: asyncpg.Connection, envelopes: Sequence[Envelope], wait: bool, rec: bool,
                     unique: bool = True) -> dict[str, str]:
        """Unique keys, records (when ``rec``) and messages of a batch inside ``conn``'s open transaction: the
        caller's own, for a transactional enqueue (the task exists only if that transaction commits)."""
        now = now_ms()
        skipped: dict[str, str] = {}
        fresh = isinstance(envelopes, Minted)  # before any filtering: a part of a minted batch is minted too
        if unique and has_unique(envelopes):
            skipped = await claim_unique(conn, self.app_name, envelopes, now, self.unique_ttl)
            if skipped:
                envelopes = [e for e in envelopes if e.uuid not in skipped]
        if envelopes:
            await enqueue_rows(conn, self.app_name, envelopes, core.encode_envelopes(list(envelopes)), wait, rec, now,
                               self.priority_levels - 1, self.db.channel, fresh=fresh)
        return skipped

    async def enqueue_in(self, connection: Any, envelopes: Sequence[Envelope], storage: Storage,
                         wait: bool = False) -> dict[str, str]:
        """The enqueue inside the caller's open transaction on ``connection`` (an asyncpg connection to this
        database): messages, records, feed and wake-up commit or roll back with the caller's own writes (workers
        are woken at the commit: NOTIFY is delivered then). The records must live here too (this database's
        storage), or they could not share the transaction. The connection's ``search_path`` is set to this
        backend's schema for the call and put back after (both transaction-local)."""
        import asyncpg

        if not isinstance(connection, asyncpg.Connection) or not connection.is_in_transaction():
            raise ValueError("add_task(connection=...) takes an asyncpg connection inside an open transaction "
                             "(async with conn.transaction(): ...)")
        if not self.fused(storage):
            raise ValueError(f"a transactional enqueue needs the records in the broker's own schema (same URL, same "
                             f"?schema=, same app name): the app's storage is {storage!r}")
        here = await self.db.identity()  # the schema exists and is migrated (once per process)
        row = await connection.fetchrow(_WHERE, self.db.schema)
        if (row["db"], row["sid"]) != here or not row["migrated"]:
            raise ValueError(f"add_task(connection=...) needs a connection to this app's database "
                             f"({redact(self.db.url)}, schema {self.db.schema!r}); this one is to database "
                             f"{row['db']!r}{'' if row['sid'] == here[1] else ' of another server'}")
        old = row["path"]
        # the schema, then pg_temp: the caller's TEMP tables must never shadow ours (pg_temp is first otherwise)
        await connection.execute("SELECT set_config('search_path', $1, true)", self.db.search_path)
        try:
            return await self.insert(connection, envelopes, wait, True)
        finally:
            try:
                await connection.execute("SELECT set_config('search_path', $1, true)", old)
            except asyncpg.PostgresError:  # the transaction failed: its rollback puts the setting back anyway
                pass

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` (bridges from foreign producers, and tests of malformed input)."""
        from qtasks_fast.portal import portal

        portal().run(self.db.execute(
            "WITH m AS (INSERT INTO messages (app, queue, prio, uuid, body) VALUES ($1, $2, $3, $4, $5))"
            " SELECT pg_notify($6, 'q:' || $1 || ':' || $2)", self.app_name, queue,
            min(max(priority, 0), self.priority_levels - 1), uuid, body, self.db.channel))

    # ------------------------------------------------------------------ worker
    async def ping(self) -> None:
        await self.db.fetchval("SELECT 1")

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id = pg_text(consumer), pg_text(worker_id)
        self._queues, self._storage = list(queues), storage
        self._closed = False
        self._woken, self._lst, self._stops, self._idle_until = asyncio.Event(), None, [], 0
        rows = await self.db.fetch("SELECT id FROM messages WHERE app = $1 AND consumer = $2", self.app_name, consumer)
        self._inherited = {r["id"] for r in rows}
        self._slow_at = 0

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        """Claim, or wait on LISTEN. An idle worker runs no transaction until a NOTIFY of its queues (an enqueue, a
        release, a delayed message added), the next due time it read after its last empty claim (a delayed
        message, a foreign lease ending; at the latest one lease from then), or a lost listener (re-listened
        before the tables are read again)."""
        deadline = time.monotonic() + block
        while True:
            if self._lst is None or self._lst.broken:
                for stop in self._stops:
                    stop()
                self._lst, self._stops = await listen(self.db, [f"q:{self.app_name}:{q}" for q in self._queues],
                                                      self._woken)
                self._idle_until = 0
            if (block <= 0 or self._woken.is_set() or now_ms() >= self._idle_until or self._inherited
                    or self._recover is not None):
                self._woken.clear()  # before the read: a NOTIFY from now on is not lost
                out = await self._claim_saving(count)
                if out:
                    self._idle_until = 0
                    return out
                # no later than one lease from now: a foreign lease shortened since it was read (a consumer with a
                # shorter lease_seconds) or a NOTIFY lost some other way costs at most that, and an idle worker
                # runs two statements per lease period (one per 30 s by default), not a poll per fetch
                recheck = int((self.lease_seconds if self._lst is not None else IDLE_RECHECK) * 1000)
                self._idle_until = min(max(await self._next_due(), self._slow_at) if self._lst is not None else _FAR,
                                       now_ms() + recheck)
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            await wait_set(self._woken, min(left, max(self._idle_until - now_ms(), 1) / 1000))

    def recover(self, held: Iterable[Delivery]) -> None:
        """A fetch failed (the connection died): its claim may have committed with the reply lost. The next fetch
        takes back this consumer's messages the worker does not hold, at once (not after their lease)."""
        self._recover = {d.msg_id for d in held}
        self._held = set(self._recover)

    async def _claim_saving(self, count: int) -> list[tuple[str, list[Any]]]:
        if self._recover is not None:
            rows = await self.db.fetch("SELECT id FROM messages WHERE app = $1 AND consumer = $2", self.app_name,
                                       self._consumer)
            self._inherited |= {r["id"] for r in rows} - self._recover
            self._recover, self._slow_at = None, 0
        out, dead = await self._claim(count)
        if dead and self._storage is not None:
            await self._storage.save(dead, self._worker_id)
        return out

    async def _next_due(self) -> int:
        """When, with no write, something becomes claimable: the next delayed message or foreign lease end."""
        due = await self.db.fetchval(
            "SELECT least((SELECT min(lease_until) + 1 FROM messages WHERE app = $1 AND queue = ANY($2::text[])"
            " AND consumer IS NOT NULL AND consumer <> $3), (SELECT min(due) FROM delayed WHERE app = $1"
            " AND queue = ANY($2::text[])))", self.app_name, self._queues, self._consumer)
        return _FAR if due is None else int(due)

    async def _claim(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome]]:
        """Hand out up to ``count`` messages in one transaction; returns them and foreign-storage outcomes."""
        now, app, maxd = now_ms(), self.app_name, self.max_deliveries
        rec = self.fused(self._storage)
        lease_until = now + int(self.lease_seconds * 1000)
        # a hand-out that would be a message's last allowed delivery goes out alone (see the Broker contract)
        alone = maxd - 1 if maxd > 1 else _FAR
        risky = min(alone, maxd)
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        left, lone = count, False
        slow = bool(self._inherited) or now >= self._slow_at
        if not slow:  # the usual fetch: one statement per queue, each its own transaction
            async with self.db.one(durable=False) as conn:
                for q in self._queues:
                    if left <= 0:
                        break
                    left -= await self._ready(conn, q, now, lease_until, rec, risky, left, out)
            return out, dead
        self._slow_at = now + SLOW_EVERY_MS
        async with self.db.tx(durable=False) as conn:
            await conn.execute(PROMOTE, app, self._queues, now)
            for q in self._queues:
                if left <= 0:
                    break
                flat: list[Any] = []
                taken: list[int] = []
                passed: list[int] = []
                for r in await conn.fetch(SLOW, app, q, now, self._consumer, list(self._inherited), risky, left):
                    if left <= 0:
                        break
                    msg_id, prio, uuid, body, delivered = r["id"], r["prio"], r["uuid"], r["body"], r["deliveries"]
                    self._inherited.discard(msg_id)
                    if delivered and await self._cancelled_on_redelivery(conn, q, msg_id, prio, uuid, body,
                                                                         delivered, now, rec, dead):
                        continue
                    if delivered >= maxd:
                        reason = f"delivered {delivered} times without finishing (max_deliveries={maxd})"
                        await self._to_dead(conn, q, msg_id, prio, uuid, body, reason, now, rec, delivered, dead)
                        continue
                    if delivered >= alone:
                        if left < count or lone:  # others are taken: it waits, unowned, for the next fetch
                            passed.append(msg_id)
                            self._slow_at = 0
                            continue
                        left, lone = 0, True
                    taken.append(msg_id)
                    left -= 1
                if passed:  # free again: an idle worker of the fleet may take it
                    await conn.execute("UPDATE messages SET consumer = NULL, lease_until = NULL"
                                       " WHERE id = ANY($1::bigint[])", passed)
                    await conn.execute("SELECT pg_notify($1, 'q:' || $2 || ':' || $3)", self.db.channel, app, q)
                if taken:
                    for r in await conn.fetch(TAKE, app, now, taken, self._consumer, lease_until, self._worker_id,
                                              rec):
                        if r["id"] not in self._held:
                            flat += (r["prio"], r["id"], r["body"], r["deliveries"])
                if flat:
                    out.append((q, flat))
                if left > 0 and not lone:
                    left -= await self._ready(conn, q, now, lease_until, rec, risky, left, out)
        return out, dead

    async def _ready(self, conn: asyncpg.Connection, q: str, now: int, lease_until: int, rec: bool, risky: int,
                     left: int, out: list[tuple[str, list[Any]]]) -> int:
        """Claim up to ``left`` ready messages of ``q`` (:data:`CLAIM`) into ``out``; returns how many it took."""
        rows = await conn.fetch(CLAIM, self.app_name, now, q, self._consumer, lease_until, self._worker_id, rec,
                                risky, left)
        flat: list[Any] = []
        for r in rows:
            if r["id"] not in self._held:  # already running here: leased to us again, not run twice
                flat += (r["prio"], r["id"], r["body"], r["deliveries"])
        if flat:
            if out and out[-1][0] == q:
                out[-1][1].extend(flat)
            else:
                out.append((q, flat))
        return len(rows)

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = await self.settle_unfused(outcomes, storage, retries)
        now = now_ms()
        ids = [o[0].msg_id for o in outcomes]
        if self._held:
            self._held.difference_update(ids)
        owners = [o[0].envelope for o in outcomes if o[1] != "success" and releases_unique(o[1], o[4])
                  and o[0].envelope is not None and unique_owner(o[0].envelope) is not None]
        # the usual batch (no retry to enqueue, no unique key to give back) is ONE statement, atomic by itself:
        # final records, their feed rows, the waiters' NOTIFY and the ack; no BEGIN/COMMIT round trips
        async with (self.db.tx(durable=False) if (retries and rec) or owners else self.db.one(durable=False)) as conn:
            if rec:
                if retries:
                    await self.insert(conn, retries, False, True)
                await settle_records(conn, self.app_name, outcomes, self._worker_id, now, self._ttl_ms,
                                     self.db.channel)
            else:
                await conn.execute("DELETE FROM messages WHERE id = ANY($1::bigint[])", ids)
            await release_unique(conn, self.app_name, owners)

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not deliveries:
            return []
        until = now_ms() + int(self.lease_seconds * 1000)
        rows = await self.db.fetch("UPDATE messages SET lease_until = $1 WHERE id = ANY($2::bigint[]) AND consumer = $3"
                                   " RETURNING id", until, [d.msg_id for d in deliveries], self._consumer)
        held = {r["id"] for r in rows}
        if self._held:
            self._held &= {d.msg_id for d in deliveries}
        return [d for d in deliveries if d.msg_id in held]

    async def close(self) -> None:
        """Ends this consumer's :meth:`cancel_requests`; the shared pool stays for the others of the process."""
        self._closed = True
        for stop in self._stops:
            stop()
        self._lst, self._stops = None, []
        for event in self._wakers:  # ends cancel_requests(), which waits on NOTIFY alone
            event.set()
