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
clock, because leases are compared across processes). There is no server to
push new work, so a blocking :meth:`SqliteBroker.fetch` polls with a short
backoff (5 ms growing to 50 ms); an idle poll is a read, never a write lock.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery, Outcome
from qtasks_fast.brokers._local import LocalBroker
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.schemas import Envelope

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL, prio INTEGER NOT NULL,
    uuid TEXT NOT NULL, body BLOB NOT NULL, consumer TEXT, lease_until INTEGER,
    deliveries INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (app, queue, consumer, prio, id);
CREATE INDEX IF NOT EXISTS messages_lease ON messages (app, queue, lease_until);
CREATE TABLE IF NOT EXISTS records (
    uuid TEXT PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL, task_name TEXT NOT NULL,
    status TEXT NOT NULL, envelope BLOB NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,
    "returning" BLOB, traceback TEXT, worker_id TEXT, retry_child TEXT, awaited INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL, prio INTEGER NOT NULL,
    uuid TEXT NOT NULL, body BLOB NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (app, queue, id);
"""
#: seconds SQLite itself retries a locked database before raising (writers queue up behind one another)
BUSY_TIMEOUT = 30.0
_env_decode = msgspec.msgpack.Decoder(Envelope).decode
_abandoned: list[sqlite3.Connection] = []  # handles inherited over fork: never closed in the child


def now_ms() -> int:
    return int(time.time() * 1000)


class SqliteConnection:
    """One sqlite3 handle per process for one file, shared by broker and storage so their writes can fuse.

    The handle is opened lazily and reopened after ``fork`` (a connection must
    not cross a fork). A re-entrant lock serialises its use between the event
    loop and sync-client threads; SQLite's own locking (``busy_timeout``)
    serialises processes.
    """

    _shared: dict[str, SqliteConnection] = {}
    _shared_lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._pid = 0
        self.lock = threading.RLock()

    @classmethod
    def for_path(cls, path: str) -> SqliteConnection:
        """The process-wide connection of ``path``: brokers and storages built on one file share it."""
        key = path if path == ":memory:" else os.path.realpath(path)
        with cls._shared_lock:
            conn = cls._shared.get(key)
            if conn is None:
                conn = cls._shared[key] = cls(path)
            return conn

    def __repr__(self) -> str:
        return f"SqliteConnection({self.path!r})"

    def _guard(self) -> threading.RLock:
        """This process's lock, after dropping state inherited over ``fork`` (checked before taking the lock,
        which another thread of the parent may have held at fork time)."""
        if self._pid != os.getpid():
            if self._db is not None:
                _abandoned.append(self._db)  # parent's handle: closing it here could break the parent's locks
            self._db = None
            self.lock = threading.RLock()
            self._pid = os.getpid()
        return self.lock

    @property
    def db(self) -> sqlite3.Connection:
        """The open handle (call with :attr:`lock` held)."""
        self._guard()
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL survives any process crash (the failure at-least-once is about); only a power
            # cut can lose the last commits — the same trade as Redis' default ``appendfsync everysec``.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise BrokerUnavailable(f"cannot open the SQLite database {self.path!r}: {exc}. Is the directory "
                                    "writable (set QTASKS_SQLITE_PATH or pass sqlite:///path)?") from exc
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock first, so reads inside it are current."""
        with self._guard():
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._guard():
            return self.db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._guard():
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


# ------------------------------------------------------------------ record writes shared with SqliteStorage
def insert_records(db: sqlite3.Connection, app: str, envelopes: Sequence[Envelope], blobs: Sequence[bytes],
                   wait: bool, now: int) -> None:
    """``new`` records; a re-sent uuid starts over (as a fresh Redis HSET of the same fields would)."""
    db.executemany(
        "INSERT OR REPLACE INTO records (uuid, app, queue, task_name, status, envelope, created, updated, awaited)"
        " VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?)",
        [(e.uuid, app, e.queue, e.task_name, b, now, now, int(wait)) for e, b in zip(envelopes, blobs, strict=True)])


def finish_records(db: sqlite3.Connection, app: str, outcomes: Sequence[Outcome], worker_id: str, now: int,
                   ttl_ms: int) -> None:
    """Final states; an upsert, so a message whose record is gone (expired, foreign producer) still reports."""
    rows = []
    for d, status, ret, tb, child in outcomes:
        env = d.envelope
        assert env is not None, "settled deliveries always carry their envelope"
        raw = d.raw if isinstance(d.raw, bytes) else msgspec.msgpack.encode(env)
        rows.append((env.uuid, app, env.queue, env.task_name, status, raw, int(env.created_at * 1000) or now, now,
                     ret, tb or None, worker_id or None, child or None, now + ttl_ms))
    db.executemany(
        "INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, \"returning\","
        " traceback, worker_id, retry_child, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, updated = excluded.updated,"
        " \"returning\" = excluded.\"returning\", traceback = excluded.traceback, worker_id = excluded.worker_id,"
        " retry_child = excluded.retry_child, expires_at = excluded.expires_at", rows)


def mark_process(db: sqlite3.Connection, uuids: Sequence[str], worker_id: str, now: int) -> None:
    db.executemany("UPDATE records SET status = 'process', worker_id = ?, updated = ? WHERE uuid = ?",
                   [(worker_id, now, u) for u in uuids])


class SqliteBroker(LocalBroker):
    """Broker on one SQLite file; pairs with ``SqliteStorage`` on the same file for fused writes."""

    def __init__(self, path: str, *, app_name: str = "QueueTasks", connection: SqliteConnection | None = None,
                 priority_levels: int = 10, lease_seconds: float = 30.0, max_deliveries: int = 5,
                 result_ttl: float = 86400.0) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.path = path
        self.conn = connection or SqliteConnection.for_path(path)
        self._takeover = True  # the first fetch takes over this consumer name's own messages

    def __repr__(self) -> str:
        return f"SqliteBroker({self.path!r}, app={self.app_name!r})"

    def fused(self, storage: Storage | None) -> bool:
        from qtasks_fast.storages.sqlite import SqliteStorage

        return (isinstance(storage, SqliteStorage) and storage.app_name == self.app_name
                and (storage.conn is self.conn or storage.conn.path == self.conn.path != ":memory:"))

    @property
    def _ttl_ms(self) -> int:
        return int(self.result_ttl * 1000)

    # ---------------------------------------------------------------- producer
    def _insert_tx(self, db: sqlite3.Connection, envelopes: Sequence[Envelope], wait: bool, rec: bool,
                   now: int) -> None:
        """Records (when fused) and messages of a batch, inside the caller's transaction."""
        blobs = core.encode_envelopes(list(envelopes))
        if rec:
            insert_records(db, self.app_name, envelopes, blobs, wait, now)
        top = self.priority_levels - 1  # out-of-range priorities are clamped, never left unread
        db.executemany("INSERT INTO messages (app, queue, prio, uuid, body) VALUES (?, ?, ?, ?, ?)",
                       [(self.app_name, e.queue, min(max(e.priority, 0), top), e.uuid, b)
                        for e, b in zip(envelopes, blobs, strict=True)])

    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool) -> None:
        with self.conn.tx() as db:
            self._insert_tx(db, envelopes, wait, rec, now_ms())

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` (bridges from foreign producers, and tests of malformed input)."""
        with self.conn.tx() as db:
            db.execute("INSERT INTO messages (app, queue, prio, uuid, body) VALUES (?, ?, ?, ?, ?)",
                       (self.app_name, queue, min(max(priority, 0), self.priority_levels - 1), uuid, body))

    # ------------------------------------------------------------------ worker
    async def ping(self) -> None:
        try:
            self.conn.read("SELECT 1")
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"SQLite database {self.path!r} is not usable: {exc}") from exc

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        self._takeover = True
        await self.ping()

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        deadline = time.monotonic() + block
        delay = 0.005
        while True:
            out, dead = self._claim(count)
            if dead and not self.fused(self._storage) and self._storage is not None:
                await self._storage.save(dead, self._worker_id)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            # No server can wake us: poll, backing off so an idle worker costs ~20 reads a second.
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)

    def _available(self, now: int) -> bool:
        """Cheap read-only probe so idle polls never take the write lock producers need."""
        takeover = self._consumer if self._takeover else None
        for q in self._queues:
            if self.conn.read(
                    "SELECT EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND consumer IS NULL)"
                    " OR EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND lease_until < ?)"
                    " OR EXISTS (SELECT 1 FROM messages WHERE app = ? AND queue = ? AND consumer = ?)",
                    (self.app_name, q, self.app_name, q, now, self.app_name, q, takeover))[0][0]:
                return True
        return False

    def _claim(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome]]:
        """Hand out up to ``count`` messages in one transaction; returns them and foreign-storage dead letters."""
        now = now_ms()
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        if not self._available(now):
            self._takeover = False
            return out, dead
        rec = self.fused(self._storage)
        app, maxd = self.app_name, self.max_deliveries
        lease_until = now + int(self.lease_seconds * 1000)
        cols = "SELECT id, prio, uuid, body, deliveries FROM messages WHERE app = ? AND queue = ? AND "
        with self.conn.tx() as db:
            left = count
            for q in self._queues:
                if left <= 0:
                    break
                rows: list[Any] = []
                if self._takeover:  # a replacement of this worker slot: its predecessor's messages at once
                    rows += db.execute(cols + "consumer = ? ORDER BY prio, id LIMIT ?",
                                       (app, q, self._consumer, left)).fetchall()
                rows += db.execute(cols + "lease_until < ? AND consumer IS NOT ? ORDER BY prio, id LIMIT ?",
                                   (app, q, now, self._consumer if self._takeover else None, left)).fetchall()
                rows.sort(key=lambda r: (r[1], r[0]))
                rows += db.execute(cols + "consumer IS NULL ORDER BY prio, id LIMIT ?", (app, q, left)).fetchall()
                flat: list[Any] = []
                taken: list[tuple[str, int, int]] = []
                uuids: list[str] = []
                for msg_id, prio, uuid, body, delivered in rows:
                    if left <= 0:
                        break
                    if delivered >= maxd:
                        reason = f"delivered {delivered} times without finishing (max_deliveries={maxd})"
                        self._to_dead(db, q, msg_id, prio, uuid, body, reason, now, rec)
                        if not rec:
                            dead += self._dead_outcome(q, prio, msg_id, body, delivered, reason)
                        continue
                    flat += (prio, msg_id, body, delivered + 1)
                    taken.append((self._consumer, lease_until, msg_id))
                    if uuid:
                        uuids.append(uuid)
                    left -= 1
                if taken:
                    db.executemany("UPDATE messages SET consumer = ?, lease_until = ?, deliveries = deliveries + 1"
                                   " WHERE id = ?", taken)
                    if rec:
                        mark_process(db, uuids, self._worker_id, now)
                    out.append((q, flat))
        self._takeover = False
        return out, dead

    @staticmethod
    def _dead_outcome(queue: str, prio: int, msg_id: int, body: bytes, delivered: int, reason: str) -> list[Outcome]:
        d = Delivery(queue, prio, msg_id, body, delivered)
        try:
            d.envelope = _env_decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []  # no uuid to report on
        return [(d, "error", b"\xc0", "dead-lettered: " + reason, "")]

    def _to_dead(self, db: sqlite3.Connection, queue: str, msg_id: int, prio: int, uuid: str, body: bytes,
                 reason: str, now: int, rec: bool) -> None:
        db.execute("INSERT INTO dead_letters (app, queue, prio, uuid, body, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (self.app_name, queue, prio, uuid, body, reason, now))
        db.execute("DELETE FROM messages WHERE id = ?", (msg_id,))
        if rec and uuid:
            db.execute("UPDATE records SET status = 'error', traceback = ?, updated = ?, expires_at = ?"
                       " WHERE uuid = ?", ("dead-lettered: " + reason, now, now + self._ttl_ms, uuid))

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = self.fused(storage)
        if not rec:
            if retries:
                await self.enqueue(retries, storage)
            await storage.save(outcomes, self._worker_id)
        now = now_ms()
        with self.conn.tx() as db:
            if rec:
                if retries:
                    self._insert_tx(db, retries, False, True, now)
                finish_records(db, self.app_name, outcomes, self._worker_id, now, self._ttl_ms)
            db.executemany("DELETE FROM messages WHERE id = ?", [(o[0].msg_id,) for o in outcomes])

    async def renew(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        until = now_ms() + int(self.lease_seconds * 1000)
        with self.conn.tx() as db:  # only our own: a delivery another consumer took over stays theirs
            db.executemany("UPDATE messages SET lease_until = ? WHERE id = ? AND consumer = ?",
                           [(until, d.msg_id, self._consumer) for d in deliveries])

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Back to ready at their old position; the hand-out did not run, so it does not count as a delivery."""
        if not deliveries:
            return
        with self.conn.tx() as db:
            db.executemany("UPDATE messages SET consumer = NULL, lease_until = NULL,"
                           " deliveries = max(deliveries - 1, 0) WHERE id = ? AND consumer = ?",
                           [(d.msg_id, self._consumer) for d in deliveries])

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        now = now_ms()
        with self.conn.tx() as db:
            for d, reason in items:
                row = db.execute("SELECT queue, prio, uuid, body FROM messages WHERE id = ?", (d.msg_id,)).fetchone()
                if row is not None:  # gone = settled or dead-lettered by whoever took it over
                    self._to_dead(db, row[0], d.msg_id, row[1], row[2], row[3], reason, now, rec)

    async def trim_indexes(self) -> None:
        """Delete expired records (called by the worker's lease keeper every minute)."""
        with self.conn.tx() as db:
            db.execute("DELETE FROM records WHERE expires_at < ? AND app = ?", (now_ms(), self.app_name))

    async def dead_letters(self, queue: str, count: int = 100) -> list[dict[str, Any]]:
        """Newest dead-lettered messages of ``queue`` (uuid, reason, time, raw body), keys as in RedisBroker."""
        rows = self.conn.read("SELECT id, uuid, body, reason, at, prio FROM dead_letters WHERE app = ? AND queue = ?"
                              " ORDER BY id DESC LIMIT ?", (self.app_name, queue, count))
        return [{"id": str(r[0]), "u": r[1], "d": r[2], "reason": r[3], "at": r[4], "prio": r[5]} for r in rows]

    async def close(self) -> None:
        """Nothing to release per broker: the shared handle stays open for the storage and reopens lazily."""

