"""Embedded SQLite broker: the default when no broker URL is configured.

Several worker processes and producers on one host share one database file.
WAL mode lets readers run beside the single writer; every state change is one
short ``BEGIN IMMEDIATE`` transaction, so two processes can never claim the same
message (the claim reads and updates under SQLite's write lock). Task records
live in the same file (``SqliteStorage``), so, as with Redis, enqueue/fetch/
settle write message and record in one transaction when both share a
:class:`SqliteConnection`.

Message states (table ``messages``): ``consumer IS NULL`` = ready;
``consumer`` set = handed out until ``lease_until`` (ms since epoch — wall
clock, because leases are compared across processes). Envelopes with a future
``eta`` wait in table ``delayed`` and move to ``messages`` in the fetch that
finds them due. There is no server to push new work, so an idle blocking
:meth:`SqliteBroker.fetch` watches ``PRAGMA data_version`` (bumped by any other
process's commit; no table read, no lock) every 5-50 ms and re-reads the tables
only when the file changed or when the next known due time (delayed message,
lease expiry) has come — an idle worker costs next to nothing and never takes
the write lock producers need.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery, Outcome
from qtasks_fast.abc.capabilities import (
    Cancel,
    Claims,
    DeadLetters,
    FlushAll,
    Limits,
    Purge,
    QueueStatistics,
    TaskTable,
    WorkerRegistry,
)
from qtasks_fast.backends._local import body_outcome, has_unique
from qtasks_fast.backends.sqlite import seen as sqlite_seen
from qtasks_fast.backends.sqlite.audit import SqliteAudit
from qtasks_fast.backends.sqlite.control import SqliteControl
from qtasks_fast.backends.sqlite.db import (
    BUSY_TIMEOUT,
    SqliteConnection,
    at_boundary,
    claim_unique,
    finish_records,
    insert_records,
    mark_process,
    note_process,
    now_ms,
    release_unique,
)
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.log import get_logger
from qtasks_fast.schemas import Envelope, releases_unique
from qtasks_fast.steps import Either, Step, Steps

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

__all__ = ["BUSY_TIMEOUT", "SqliteBroker", "SqliteConnection", "finish_records", "insert_records", "mark_process",
           "now_ms"]
#: first and longest pause between two idle checks of a blocking fetch
POLL_MIN, POLL_MAX = 0.005, 0.05
_FAR = 1 << 62  # "no known due time"
log = get_logger("sqlite")
T = TypeVar("T")


@at_boundary
class SqliteBroker(SqliteControl, Cancel, DeadLetters, Purge, FlushAll, Limits, Claims, TaskTable, WorkerRegistry,
                   QueueStatistics, SqliteAudit):
    """Broker on one SQLite file; pairs with ``SqliteStorage`` on the same file for fused writes."""

    def __init__(self, path: str, *, app_name: str = "QueueTasks", connection: SqliteConnection | None = None,
                 priority_levels: int = 10, lease_seconds: float = 30.0, max_deliveries: int = 5,
                 result_ttl: float = 86400.0) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.path = path
        self.conn = connection or SqliteConnection.for_path(path)
        self._takeover = True  # the first fetch takes over this consumer name's own messages
        #: a fetch passed over a message due for its last delivery: the next fetch looks for one first
        self._last_waiting = False
        self._wake_at = 0  # ms: when the last idle probe expects work without any write (eta, lease expiry)
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteBroker({self.path!r}, app={self.app_name!r})"

    def fused(self, storage: Storage | None) -> bool:
        from qtasks_fast.backends.sqlite.storage import SqliteStorage

        return (isinstance(storage, SqliteStorage) and storage.app_name == self.app_name
                and (storage.conn is self.conn or storage.conn.path == self.conn.path != ":memory:"))

    # ---------------------------------------------------------------- producer
    def _insert_tx(self, db: sqlite3.Connection, envelopes: Sequence[Envelope], wait: bool, rec: bool,
                   now: int, unique: bool = True) -> dict[str, str]:
        """Unique keys, records (when fused) and messages of a batch, inside the caller's transaction."""
        skipped: dict[str, str] = {}
        if unique and has_unique(envelopes):
            skipped = claim_unique(db, self.app_name, envelopes, now, self.unique_ttl)
            if skipped:
                envelopes = [e for e in envelopes if e.uuid not in skipped]
        if not envelopes:
            return skipped
        blobs = core.encode_envelopes(list(envelopes))
        if rec:
            insert_records(db, self.app_name, envelopes, blobs, wait, now)
        top, app = self.priority_levels - 1, self.app_name  # out-of-range priorities are clamped, never unread
        ready: list[tuple[Any, ...]] = []
        later: list[tuple[Any, ...]] = []
        for e, b in zip(envelopes, blobs, strict=True):
            due = int(e.eta * 1000) if e.eta else 0
            if due > now:
                later.append((app, e.queue, min(max(e.priority, 0), top), e.uuid, b, due))
            else:
                ready.append((app, e.queue, min(max(e.priority, 0), top), e.uuid, b))
        if ready:
            db.executemany("INSERT INTO messages (app, queue, prio, uuid, body) VALUES (?, ?, ?, ?, ?)", ready)
        if later:
            db.executemany("INSERT INTO delayed (app, queue, prio, uuid, body, due) VALUES (?, ?, ?, ?, ?, ?)", later)
        return skipped

    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool, unique: bool = True) -> dict[str, str]:
        with self.conn.tx() as db:
            return self._insert_tx(db, envelopes, wait, rec, now_ms(), unique)

    def _claim_unique(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        with self.conn.tx() as db:
            return claim_unique(db, self.app_name, envelopes, now_ms(), self.unique_ttl)

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` (bridges from foreign producers, and tests of malformed input)."""
        with self.conn.tx() as db:
            db.execute("INSERT INTO messages (app, queue, prio, uuid, body) VALUES (?, ?, ?, ?, ?)",
                       (self.app_name, queue, min(max(priority, 0), self.priority_levels - 1), uuid, body))

    def _write(self, fn: Callable[..., T], *args: Any) -> Step[T]:
        """On the loop each write is retried while another connection holds the lock, without blocking the loop
        (up to ``BUSY_TIMEOUT``, then a clear error); blocking code waits in SQLite's own busy timeout."""
        return Either(lambda: self.conn.retrying(fn, *args), lambda: fn(*args))

    def _enqueuing(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool) -> Steps[dict[str, str]]:
        """Also notes that a producer wrote to this file (see :mod:`qtasks_fast.backends.sqlite.seen`)."""
        sqlite_seen.enqueued(self.conn, self.app_name)
        return (yield from super()._enqueuing(envelopes, storage, wait))

    # ------------------------------------------------------------------ worker
    async def ping(self) -> None:
        try:
            self.conn.read("SELECT 1")
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"SQLite database {self.path!r} is not usable: {exc}") from exc

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        """Also marks the file as read by a worker of this app (:data:`WORKER_SEEN`) and logs its path: the
        one place to look when a producer's tasks never run (it wrote to another file): see
        :mod:`qtasks_fast.backends.sqlite.seen`."""
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        self._takeover = True
        self._last_waiting = False
        self._closed = False
        await self.ping()
        async with self.conn.atx(patience=None) as db:
            sqlite_seen.mark(db, self.conn, self.app_name, consumer)
        log.info("worker %s uses the embedded SQLite database %s", consumer, os.path.abspath(self.path))

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        deadline = time.monotonic() + block
        delay = POLL_MIN
        while True:
            version = self.conn.version()  # before the probe: a commit after it shows as a change
            out, dead = await self.conn.retrying(self._claim, count, patience=None)  # locked: waits off-loop
            if dead and self._storage is not None:
                await self._storage.save(dead, self._worker_id)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            # Idle. Work appears only by a commit (ours or another process's) or when a known due time
            # passes; wait for either with the cheap version check instead of re-reading the tables.
            while left > 0 and now_ms() < self._wake_at and self.conn.version() == version:
                await asyncio.sleep(min(delay, left, (self._wake_at - now_ms()) / 1000))
                delay = min(delay * 2, POLL_MAX)
                left = deadline - time.monotonic()

    def _probe(self, now: int) -> tuple[bool, list[str]]:
        """Read-only: is anything claimable, and which queues have due delayed messages (no write lock taken
        by an idle poll). When nothing is, remembers in ``_wake_at`` when something will be."""
        takeover = self._consumer if self._takeover else None
        app, found, due = self.app_name, False, []
        for q in self._queues:
            avail, ripe = self.conn.read(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND consumer IS NULL)"
                " OR EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND lease_until < ?"
                " AND consumer IS NOT ?)"
                " OR EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND consumer = ?),"
                " EXISTS (SELECT 1 FROM delayed WHERE app = ? AND queue = ? AND due <= ?)",
                (app, q, app, q, now, self._consumer, app, q, takeover, app, q, now))[0]
            found = found or bool(avail)
            if ripe:
                due.append(q)
        self._wake_at = now + int(POLL_MAX * 1000)  # something to claim: if a claim still comes back empty
        if not found and not due:
            wake = _FAR
            for q in self._queues:
                lease, eta = self.conn.read(
                    "SELECT (SELECT min(lease_until) FROM messages WHERE app = ? AND queue = ?"
                    " AND lease_until IS NOT NULL AND consumer IS NOT ?),"
                    " (SELECT min(due) FROM delayed WHERE app = ? AND queue = ?)",
                    (app, q, self._consumer, app, q))[0]
                wake = min(wake, (lease + 1) if lease is not None else _FAR, eta if eta is not None else _FAR)
            self._wake_at = wake
        return found, due

    def _claim(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome]]:
        """Hand out up to ``count`` messages in one transaction; returns them and foreign-storage outcomes
        (dead letters, cancels found on redelivery)."""
        now = now_ms()
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        found, due = self._probe(now)
        if not found and not due:
            self._takeover = False
            return out, dead
        rec = self.fused(self._storage)
        app, maxd = self.app_name, self.max_deliveries
        lease_until = now + int(self.lease_seconds * 1000)
        cols = "SELECT id, prio, uuid, body, deliveries FROM messages WHERE app = ? AND queue = ? AND "
        # a hand-out that would be a message's last allowed delivery goes out alone (as on Redis, see
        # redis.lua op fetch): when a message kills its worker on every run, the messages fetched with it
        # are not charged deliveries they never ran, and only the culprit reaches the dead letters
        alone = maxd - 1 if maxd > 1 else _FAR
        with self.conn.tx() as db:
            for q in due:  # promote due delayed messages, oldest due first
                db.execute("INSERT INTO messages (app, queue, prio, uuid, body) SELECT app, queue, prio, uuid, body"
                           " FROM delayed WHERE app = ? AND queue = ? AND due <= ? ORDER BY due, id", (app, q, now))
                db.execute("DELETE FROM delayed WHERE app = ? AND queue = ? AND due <= ?", (app, q, now))
            left = count
            lone = 1  # becomes 0 when a last attempt goes out alone
            first = self._last_attempts(db, now) if self._last_waiting else []
            for q in self._queues:
                if left <= 0:
                    break
                rows: list[Any] = []
                if first:
                    if first[0] != q:
                        continue
                    rows = [first[1]]
                else:
                    if self._takeover:  # a replacement of this worker slot: its predecessor's messages at once
                        rows += db.execute(cols + "consumer = ? ORDER BY prio, id LIMIT ?",
                                           (app, q, self._consumer, left)).fetchall()
                    # expired leases of other consumers only: this one is alive (it is fetching), it still
                    # runs its own however late their renewal, and taking them here would run them twice
                    rows += db.execute(cols + "lease_until < ? AND consumer IS NOT ? ORDER BY prio, id LIMIT ?",
                                       (app, q, now, self._consumer, left)).fetchall()
                    rows.sort(key=lambda r: (r[1], r[0]))
                    rows += db.execute(cols + "consumer IS NULL ORDER BY prio, id LIMIT ?", (app, q, left)).fetchall()
                flat: list[Any] = []
                taken: list[tuple[str, int, int, int]] = []
                uuids: list[str] = []
                passed: list[tuple[int]] = []
                for msg_id, prio, uuid, body, delivered in rows:
                    if left <= 0:
                        break
                    if delivered and self._cancelled_on_redelivery(db, q, msg_id, prio, uuid, body, delivered,
                                                                   now, rec, dead):
                        continue
                    if delivered >= maxd:
                        reason = f"delivered {delivered} times without finishing (max_deliveries={maxd})"
                        self._to_dead(db, q, msg_id, prio, uuid, body, reason, now, rec, delivered)
                        if not rec:
                            dead += body_outcome(q, prio, msg_id, body, delivered, "error", "dead-lettered: " + reason)
                        continue
                    if delivered >= alone:
                        if left < count:  # others are taken already: it waits for a fetch of its own,
                            self._last_waiting = True  # unowned (a dead predecessor's lease must not hold it)
                            passed.append((msg_id,))
                            continue
                        left = lone = 0  # the only message of this fetch
                    flat += (prio, msg_id, body, delivered + 1)
                    taken.append((self._consumer, lease_until, now, msg_id))
                    if uuid:
                        uuids.append(uuid)
                    left -= 1
                if passed:
                    db.executemany("UPDATE messages SET consumer = NULL, lease_until = NULL WHERE id = ?", passed)
                if taken:
                    db.executemany("UPDATE messages SET consumer = ?, lease_until = ?, handed = ?,"
                                   " deliveries = deliveries + 1 WHERE id = ?", taken)
                    if rec:  # no record write: a handed-out message is what makes its task read `process`
                        note_process(db, uuids, self._worker_id, now)
                    out.append((q, flat))
        # a takeover that handed out one last attempt alone goes on with the next fetch (the worker runs
        # that attempt alone and settles it first), until the predecessor's messages are all handed out
        self._takeover = self._takeover and not lone
        return out, dead

    def _last_attempts(self, db: sqlite3.Connection, now: int) -> list[Any]:
        """``[queue, row]`` of one claimable message due for its last delivery (a fetch passed it over
        earlier), ``[]`` when none is left. Rare: it runs only after such a pass-over."""
        self._last_waiting = False
        for q in self._queues:
            row = db.execute("SELECT id, prio, uuid, body, deliveries FROM messages WHERE app = ? AND queue = ?"
                             " AND deliveries >= ? AND (consumer IS NULL OR (lease_until < ? AND consumer IS NOT ?)"
                             " OR consumer = ?) ORDER BY prio, id LIMIT 1",
                             (self.app_name, q, self.max_deliveries - 1, now, self._consumer,
                              self._consumer if self._takeover else None)).fetchone()
            if row is not None:
                return [q, row]
        return []

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = await self.settle_unfused(outcomes, storage, retries)
        now = now_ms()
        ids = json.dumps([o[0].msg_id for o in outcomes])
        async with self.conn.atx(patience=None) as db:
            handed = dict(db.execute("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))"
                                     " RETURNING id, handed", (ids,)).fetchall())
            if rec:
                if retries:
                    self._insert_tx(db, retries, False, True, now)
                finish_records(db, self.app_name, outcomes, self._worker_id, now, self._ttl_ms, handed)
            release_unique(db, self.app_name, [o[0].envelope for o in outcomes
                                               if o[1] != "success" and releases_unique(o[1], o[4])])

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        held: list[Delivery] = []
        if not deliveries:
            return held
        until = now_ms() + int(self.lease_seconds * 1000)
        async with self.conn.atx(patience=None) as db:  # only our own: one another consumer took over stays theirs
            for d in deliveries:
                if db.execute("UPDATE messages SET lease_until = ? WHERE id = ? AND consumer = ?",
                              (until, d.msg_id, self._consumer)).rowcount:
                    held.append(d)
        return held

    def close_sync(self) -> None:
        """Close the file handle this process shares with the storage (the client's ``close()``); it reopens
        lazily."""
        self.conn.close()

    async def close(self) -> None:
        """Ends this consumer's :meth:`cancel_requests`; the shared handle stays open for the storage and
        reopens lazily."""
        self._closed = True
