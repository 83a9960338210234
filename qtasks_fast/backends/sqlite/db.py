"""The embedded SQLite file: schema, the per-process connection, and the record writes broker and storage share.

Tables: ``messages`` (ready and handed-out messages), ``delayed`` (messages
with an ``eta``, keyed by their due time: kept apart so that a fetch's ready
scan never steps over future work), ``records`` (task records), ``dead_letters``,
``cancel_requests`` (cancels of running tasks, read by every worker),
``claims`` (unique-enqueue keys and leader claims), ``slots`` (the
fleet-wide concurrency-limit semaphores), ``workers`` (the worker registry: one
row per live worker process, its msgpack ``WorkerInfo`` and last heartbeat in ms),
``task_table`` (the task table workers publish for producers, see
``qtasks_fast/tasktable.py``), ``meta`` (facts about the file per app: that a worker
has used it, so a producer can tell a database no worker reads), ``logs`` (lines
captured by LogCapture), ``audit`` (the audit log of the control surfaces: msgpack ``AuditEntry`` per row)
and ``event_batches`` (the query side's feed of status changes: one row per queue
per batch, written in the transaction of the change by the functions here that change a status; see
:mod:`qtasks_fast.backends.sqlite.feed`). No trigger writes it: a row per change made enqueue, fetch and
settle about twice as dear (measured with ``python -m qtasks_fast.benchmarks.ab --suite sqlite``).

The ``records`` indexes of the query side each serve a page that must stay an ordered index walk at scale
(status + created, name + created, finish-time range; restarts) and each costs a B-tree write per change of
its columns: ``records_status`` is the dearest (an insert at enqueue, a move at settle). A fetch writes no
record at all: a handed-out message (``consumer``, ``handed``) is what makes its task read ``process``, see
:mod:`~qtasks_fast.backends.sqlite.held`; settle copies ``handed`` into the record's ``started``. Measured
alternative (callgrind, SQLite instructions per task): partial indexes ``finished IS NULL`` / ``IS NOT NULL``
instead would skip the move at fetch (-7 %) but leave ``status=process`` pages unindexed, a walk over the
whole backlog; a partial ``status = 'process'`` index to restore it costs back all but 2 % of the saving.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from qtasks_fast.backends._boundary import boundary
from qtasks_fast.backends.sqlite import feed
from qtasks_fast.exceptions import BrokerFull, BrokerUnavailable, ConfigError
from qtasks_fast.faults import Outage
from qtasks_fast.log import get_logger
from qtasks_fast.schemas import META_RESTART_OF, META_UNIQUE, unique_owner

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Outcome
    from qtasks_fast.schemas import Envelope

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL, prio INTEGER NOT NULL,
    uuid TEXT NOT NULL, body BLOB NOT NULL, consumer TEXT, lease_until INTEGER,
    deliveries INTEGER NOT NULL DEFAULT 0, handed INTEGER);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (app, queue, consumer, prio, id);
CREATE INDEX IF NOT EXISTS messages_lease ON messages (app, queue, lease_until);
CREATE TABLE IF NOT EXISTS delayed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL, prio INTEGER NOT NULL,
    uuid TEXT NOT NULL, body BLOB NOT NULL, due INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS delayed_due ON delayed (app, queue, due);
CREATE TABLE IF NOT EXISTS records (
    uuid TEXT PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL, task_name TEXT NOT NULL,
    status TEXT NOT NULL, envelope BLOB NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,
    "returning" BLOB, traceback TEXT, worker_id TEXT, retry_child TEXT, awaited INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER, deliveries INTEGER NOT NULL DEFAULT 1, started INTEGER, finished INTEGER, restart_of TEXT);
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_status ON records (app, queue, status, created, uuid);
CREATE INDEX IF NOT EXISTS records_name ON records (app, queue, task_name, created, uuid);
CREATE INDEX IF NOT EXISTS records_finished ON records (app, queue, finished, status) WHERE finished IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_restart ON records (restart_of) WHERE restart_of IS NOT NULL;
CREATE TABLE IF NOT EXISTS event_batches (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER NOT NULL,
    items BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS event_batches_queue ON event_batches (app, queue, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL, prio INTEGER NOT NULL,
    uuid TEXT NOT NULL, body BLOB NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_queue ON dead_letters (app, queue, id);
CREATE TABLE IF NOT EXISTS cancel_requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, uuid TEXT NOT NULL, msg_id INTEGER NOT NULL,
    reason TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS cancel_requests_msg ON cancel_requests (msg_id);
CREATE TABLE IF NOT EXISTS claims (
    app TEXT NOT NULL, key TEXT NOT NULL, holder TEXT NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (app, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (
    app TEXT NOT NULL, queue TEXT NOT NULL, key TEXT NOT NULL, token TEXT NOT NULL, expires INTEGER NOT NULL,
    PRIMARY KEY (app, queue, key, token)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers (
    app TEXT NOT NULL, key TEXT NOT NULL, info BLOB NOT NULL, heartbeat INTEGER NOT NULL,
    PRIMARY KEY (app, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_table (
    app TEXT NOT NULL, name TEXT NOT NULL, spec BLOB NOT NULL, PRIMARY KEY (app, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL, uuid TEXT NOT NULL,
    line TEXT NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS logs_task ON logs (app, uuid, id);
CREATE INDEX IF NOT EXISTS logs_expiry ON logs (expires_at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, at INTEGER NOT NULL, entry BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS audit_app ON audit (app, id);
CREATE TABLE IF NOT EXISTS meta (
    app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (app, key)) WITHOUT ROWID;
"""
#: seconds a write of a producer or of the CLI waits for another connection's write lock before it raises
#: (writers queue up behind one another); a worker waits as long as it takes, see :class:`LockWait`
BUSY_TIMEOUT = 30.0
#: seconds SQLite's own busy handler waits per attempt: the longest a lock wait may hold the calling thread
#: (the event loop, for a worker) before the wait goes on with ``asyncio.sleep`` or ``time.sleep``
ATTEMPT_TIMEOUT = 0.01
#: seconds a read retries a busy moment of the file (WAL readers wait for no writer; only a log recovery after
#: a crash can make them wait, for milliseconds)
READ_PATIENCE = 0.5
#: a lock held longer than this is an outage (logged once, see :class:`~qtasks_fast.faults.Outage`), not a queue
QUIET_SECONDS = 1.0
_abandoned: list[sqlite3.Connection] = []  # handles inherited over fork: never closed in the child
#: set by :meth:`SqliteConnection.retrying`: the sync ``tx`` it calls makes one attempt and lets it wait
_one_attempt: ContextVar[bool] = ContextVar("qtasks_sqlite_one_attempt", default=False)
_TABLES = frozenset(re.findall(r"CREATE (?:TABLE|INDEX|TRIGGER) IF NOT EXISTS (\w+)", SCHEMA))
#: ``records`` columns added after the first release: a file made before gets them on open
_LATER_COLUMNS = {"records": {"deliveries": "INTEGER NOT NULL DEFAULT 1", "started": "INTEGER",
                              "finished": "INTEGER", "restart_of": "TEXT"},
                  "messages": {"handed": "INTEGER"}}
log = get_logger("sqlite")
T = TypeVar("T")


def locked(exc: BaseException) -> bool:
    """True when ``exc`` is SQLite saying another connection holds the lock (transient: wait and retry)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    msg = str(exc)
    return "locked" in msg or "busy" in msg


def ours(backend: Any, exc: BaseException) -> BaseException | None:
    """sqlite3's outages as ours (the rule: qtasks_fast.abc.broker): a lock another connection holds (past
    the patience of the call) is ``BrokerUnavailable``, a full disk ``BrokerFull``; None for anything else."""
    path = getattr(backend, "path", "?")
    if locked(exc):
        return BrokerUnavailable(f"SQLite database {path!r} is locked by another connection ({exc}); retry later, "
                                 f"or find the holder with `fuser {path}`")
    if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):  # SQLITE_FULL: disk or quota
        return BrokerFull(f"SQLite database {path!r} cannot grow ({exc}): free disk space, lower result_ttl, or "
                          "retry later")
    return None


#: wraps each contract method of a SQLite class so sqlite3's outages leave it as ours (see backends._boundary)
at_boundary = boundary(ours)


@contextmanager
def suppress_locked() -> Iterator[None]:
    """Skip an optional write (a sweep, a hint) when another connection holds the lock: one short attempt."""
    token = _one_attempt.set(True)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not locked(exc):
            raise
    finally:
        _one_attempt.reset(token)


class LockWait:
    """The wait for another connection's write lock: short quiet sleeps while writers queue up as usual;
    past :data:`QUIET_SECONDS` an outage, logged when it starts and when it ends (never per attempt).

    ``patience`` None waits as long as it takes (a worker: nothing crashes, no delivery is charged);
    otherwise :meth:`next` raises a clear error once the lock has been held that long.
    """

    def __init__(self, path: str, patience: float | None) -> None:
        self.path, self.patience = path, patience
        self.since = time.monotonic()
        self.delay = 0.002
        self.outage: Outage | None = None

    def next(self, exc: BaseException) -> float:
        """Seconds to sleep before the next attempt (or raise when out of patience)."""
        held = time.monotonic() - self.since
        if self.patience is not None and held >= self.patience:
            raise BrokerUnavailable(
                f"SQLite database {self.path!r} is locked: another connection has held its write lock for "
                f"{held:.0f}s (a long transaction, or a process stopped while writing); retry later, or find "
                f"the holder with `fuser {self.path}`") from exc
        if self.outage is None and held >= QUIET_SECONDS:
            self.outage = Outage(log, f"SQLite database {self.path!r} is locked by another connection "
                                      "(its write lock is held)", first=self.delay, cap=1.0)
        if self.outage is not None:
            return self.outage.failed(exc)
        delay, self.delay = self.delay, min(self.delay * 2, 0.05)
        return delay

    def done(self) -> None:
        if self.outage is not None:
            self.outage.ok()


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
        #: commits through this handle; ``PRAGMA data_version`` only counts other connections' commits
        self.writes = 0

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

    async def retrying(self, fn: Callable[..., T], *args: Any, patience: float | None = BUSY_TIMEOUT) -> T:
        """Call ``fn(*args)`` (sync code that runs one ``tx``) on the event loop; while another connection
        holds the write lock, wait with ``asyncio.sleep`` and call again (``fn`` must do nothing before its
        ``tx`` that cannot be done twice). Each attempt holds the loop at most :data:`ATTEMPT_TIMEOUT`."""
        wait: LockWait | None = None
        while True:
            token = _one_attempt.set(True)
            try:
                result = fn(*args)
            except sqlite3.OperationalError as exc:
                if not locked(exc):
                    raise
                wait = wait or LockWait(self.path, patience)
                await asyncio.sleep(wait.next(exc))
                continue
            finally:
                _one_attempt.reset(token)
            if wait is not None:
                wait.done()
            return result

    @asynccontextmanager
    async def atx(self, patience: float | None = BUSY_TIMEOUT) -> AsyncIterator[sqlite3.Connection]:
        """:meth:`tx` for coroutines: waiting for the write lock never blocks the event loop.

        ``patience`` None (worker writes) waits as long as the lock is held; otherwise raises after that long.
        """
        wait: LockWait | None = None
        while True:
            got = self._begin(blocking=False)
            if got is None:  # a thread of this process writes: its turn first
                await asyncio.sleep(0.001)
                continue
            if isinstance(got, sqlite3.OperationalError):
                wait = wait or LockWait(self.path, patience)
                await asyncio.sleep(wait.next(got))
                continue
            break
        if wait is not None:
            wait.done()
        with self._committing(*got) as db:
            yield db

    def _begin(self, blocking: bool) -> tuple[sqlite3.Connection, threading.RLock] | sqlite3.OperationalError | None:
        """One try at ``BEGIN IMMEDIATE``: the handle and this process's lock (held) on success; the "locked"
        error when another connection holds the write lock; None when ``blocking`` is False and a thread of
        this process holds the lock. The one place :meth:`tx` and :meth:`atx` take the lock."""
        lock = self._guard()
        if not lock.acquire(blocking=blocking):
            return None
        try:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            return db, lock
        except sqlite3.OperationalError as exc:
            lock.release()
            if not locked(exc):
                raise
            return exc
        except BaseException:
            lock.release()
            raise

    @contextmanager
    def _committing(self, db: sqlite3.Connection, lock: threading.RLock) -> Iterator[sqlite3.Connection]:
        """The body of a transaction begun by :meth:`_begin`: commit, or roll back on any exception; then
        release this process's lock."""
        try:
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self.writes += 1
        finally:
            lock.release()

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
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:  # not a directory, no permission: waiting would not help
                raise ConfigError(f"cannot create the directory of the SQLite database {self.path!r}: {exc}; "
                                  "point sqlite:///path (or QTASKS_SQLITE_PATH) at a writable place") from exc
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, timeout=ATTEMPT_TIMEOUT, isolation_level=None, check_same_thread=False)
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL survives any process crash (the failure at-least-once is about); only a power
            # cut can lose the last commits — the same trade as Redis' default ``appendfsync everysec``.
            db.execute("PRAGMA synchronous=NORMAL")
            db.create_function("py_lower", 1, _lower, deterministic=True)  # error_contains: Unicode-aware
            master = dict(db.execute("SELECT name, sql FROM sqlite_master").fetchall())
            if "records_event_update" in master:  # the feed before it was batched: its triggers cost every write
                db.executescript(f"BEGIN IMMEDIATE;{feed.RETIRED}COMMIT;")
            if any(t in master and any(c not in (master[t] or "") for c in cols)
                   for t, cols in _LATER_COLUMNS.items()):
                add_later_columns(db)  # made before a column: first, the indexes below may use it
            if not _TABLES <= master.keys():  # reads only when the schema exists: opens while another process writes
                db.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            if locked(exc):  # another connection writes: a wait, not a broken file or directory
                raise
            where = os.path.dirname(os.path.abspath(self.path))
            if self.path != ":memory:" and not os.access(where, os.W_OK | os.X_OK):
                raise ConfigError(f"cannot open the SQLite database {self.path!r}: {exc}; its directory is not "
                                  "writable by this user: point sqlite:///path (or QTASKS_SQLITE_PATH) at a "
                                  "writable place") from exc
            raise BrokerUnavailable(f"cannot open the SQLite database {self.path!r}: {exc}") from exc
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock first, so reads inside it are current.

        For sync callers (threads): while another connection holds the lock, waits with ``time.sleep``
        (this process's lock released meanwhile) up to :data:`BUSY_TIMEOUT`. Under :meth:`retrying`, makes
        one attempt and lets the coroutine wait. Coroutines use :meth:`atx`.
        """
        wait: LockWait | None = None
        while True:
            got = self._begin(blocking=True)
            if isinstance(got, sqlite3.OperationalError):
                if _one_attempt.get():
                    raise got
                wait = wait or LockWait(self.path, BUSY_TIMEOUT)
                time.sleep(wait.next(got))
                continue
            break
        if wait is not None:
            wait.done()
        assert got is not None  # a blocking acquire always gets the lock
        with self._committing(*got) as db:
            yield db

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a query. WAL readers do not wait for writers; the rare busy moment (another process
        recovering the log after a crash) is retried briefly, see :data:`READ_PATIENCE`."""
        wait: LockWait | None = None
        while True:
            with self._guard():
                try:
                    return self.db.execute(sql, params).fetchall()
                except sqlite3.OperationalError as exc:
                    if not locked(exc) or _one_attempt.get():
                        raise
                    wait = wait or LockWait(self.path, READ_PATIENCE)
                    delay = wait.next(exc)
            time.sleep(delay)

    def version(self) -> tuple[int, int]:
        """Changes when anyone commits to the file: a check that costs no table read (idle waits use it)."""
        return self.read("PRAGMA data_version")[0][0], self.writes

    def close(self) -> None:
        with self._guard():
            if self._db is not None and self._pid == os.getpid():
                self._db.close()
            self._db = None


# ------------------------------------------------------------------ record writes shared with SqliteStorage
def insert_records(db: sqlite3.Connection, app: str, envelopes: Sequence[Envelope], blobs: Sequence[bytes],
                   wait: bool, now: int) -> None:
    """``new`` records; a re-sent uuid starts over (as a fresh Redis HSET of the same fields would).

    ``created`` is the envelope's creation time (what task lists order by), in ms."""
    db.executemany(
        "INSERT OR REPLACE INTO records (uuid, app, queue, task_name, status, envelope, created, updated, awaited,"
        " restart_of) VALUES (?, ?, ?, ?, 'new', ?, ?, ?, ?, ?)",
        [(e.uuid, app, e.queue, e.task_name, b, round(e.created_at * 1000) or now, now, int(wait),
          e.meta.get(META_RESTART_OF) if e.meta else None) for e, b in zip(envelopes, blobs, strict=True)])
    feed.add(db, app, now, [(e.queue, e.uuid, e.task_name, "new", None) for e in envelopes])


def _lower(value: str | None) -> str | None:
    return value.lower() if isinstance(value, str) else None


def add_later_columns(db: sqlite3.Connection) -> None:
    """A file made before some columns (:data:`_LATER_COLUMNS`): add them (once, whoever opens it first; a
    cheap schema change, the rows are not rewritten)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, later in _LATER_COLUMNS.items():
            cols = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            for name, decl in later.items():
                if cols and name not in cols:  # another process may have added it meanwhile
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def finish_records(db: sqlite3.Connection, app: str, outcomes: Sequence[Outcome], worker_id: str, now: int,
                   ttl_ms: int, handed: dict[int, int] | None = None) -> None:
    """Final states; an upsert, so a message whose record is gone (expired, foreign producer) still reports.

    ``handed`` (message id -> hand-out time, fused settles) fills ``started``: the fetch wrote no record."""
    handed = handed or {}
    rows = []
    for d, status, ret, tb, child in outcomes:
        env = d.envelope
        assert env is not None, "settled deliveries always carry their envelope"
        raw = d.raw if isinstance(d.raw, bytes) else msgspec.msgpack.encode(env)
        rows.append((env.uuid, app, d.queue, env.task_name, status, raw, round(env.created_at * 1000) or now, now,
                     ret, tb or None, worker_id or None, child or None, now + ttl_ms, d.deliveries or 1, now,
                     env.meta.get(META_RESTART_OF) if env.meta else None, handed.get(d.msg_id)))
    db.executemany(
        "INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated, \"returning\","
        " traceback, worker_id, retry_child, expires_at, deliveries, finished, restart_of, started)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (uuid) DO UPDATE SET status = excluded.status, updated = excluded.updated,"
        " finished = excluded.finished, started = coalesce(excluded.started, started),"
        " \"returning\" = excluded.\"returning\", traceback = excluded.traceback, worker_id = excluded.worker_id,"
        " retry_child = excluded.retry_child, expires_at = excluded.expires_at, deliveries = excluded.deliveries",
        rows)
    feed.add(db, app, now, [(r[2], r[0], r[3], r[4], r[10]) for r in rows])


def _in(uuids: Sequence[str]) -> str:
    """``uuids`` as one JSON parameter for ``uuid IN (SELECT value FROM json_each(?))``: one statement (with
    ``RETURNING`` what the event feed needs) instead of an ``executemany`` per row."""
    return json.dumps(list(uuids))


def note_process(db: sqlite3.Connection, uuids: Sequence[str], worker_id: str, now: int) -> None:
    """The ``process`` events of a fused fetch, records untouched: while its message is handed out, a task
    reads as ``process`` on the message's consumer (see :mod:`~qtasks_fast.backends.sqlite.held`), so the
    fetch pays no record write and no ``records_status`` index move (a record that is gone gets no event)."""
    rows = db.execute("SELECT app, queue, uuid, task_name FROM records WHERE uuid IN (SELECT value FROM json_each(?))",
                      (_in(uuids),)).fetchall()
    changed(db, now, rows, "process", worker_id)


def mark_process(db: sqlite3.Connection, uuids: Sequence[str], worker_id: str, now: int) -> None:
    """Existing records of ``uuids`` to ``process`` on ``worker_id`` (a record that is gone is left gone): for
    a foreign broker's fetch (no ``messages`` row here tells that the task runs)."""
    rows = db.execute("UPDATE records SET status = 'process', worker_id = ?, updated = ?, started = ?"
                      " WHERE uuid IN (SELECT value FROM json_each(?)) RETURNING app, queue, uuid, task_name",
                      (worker_id, now, now, _in(uuids))).fetchall()
    changed(db, now, rows, "process", worker_id)


def changed(db: sqlite3.Connection, now: int, rows: Sequence[Sequence[Any]], status: str,
            worker_id: str | None = None) -> None:
    """Feed events for the ``(app, queue, uuid, task_name[, worker_id])`` rows a status write returned."""
    by_app: dict[str, list[feed.Change]] = {}
    for r in rows:
        by_app.setdefault(r[0], []).append((r[1], r[2], r[3], status, worker_id if len(r) < 5 else r[4]))
    for app, changes in by_app.items():
        feed.add(db, app, now, changes)


def cancel_records(db: sqlite3.Connection, app: str, uuids: Sequence[str], reason: str, now: int,
                   ttl_ms: int, worker: str | None = None) -> None:
    """Set existing records to ``cancel`` (the reason goes where a failure's traceback would); ``worker`` is
    the consumer that held the message, if any (a fetch writes no record, see held.py)."""
    rows = db.execute("UPDATE records SET status = 'cancel', traceback = ?, \"returning\" = NULL, updated = ?,"
                      " finished = ?, expires_at = ?, worker_id = coalesce(?, worker_id)"
                      " WHERE app = ? AND uuid IN (SELECT value FROM json_each(?))"
                      " RETURNING app, queue, uuid, task_name, worker_id",
                      (reason, now, now, now + ttl_ms, worker, app, _in([u for u in uuids if u]))).fetchall()
    changed(db, now, rows, "cancel")


def claim_unique(db: sqlite3.Connection, app: str, envelopes: Sequence[Envelope], now: int,
                 default_ttl: float) -> dict[str, str]:
    """Claim the ``META_UNIQUE`` keys of a batch; ``{skipped uuid: holder uuid}`` for keys already held.

    A re-sent uuid is skipped too (holder = itself): a rerun that enqueues the same
    deterministic uuid again (a chain step after a crash) must not run it twice.
    """
    skipped: dict[str, str] = {}
    for env in envelopes:
        spec = env.meta.get(META_UNIQUE)
        if not spec:
            continue
        # per queue, as on Redis (the key lives under the queue's hash tag there)
        key, ttl = f"u:{env.queue}:{spec[0]}", (spec[1] if len(spec) > 1 and spec[1] else default_ttl)
        row = db.execute("SELECT holder FROM claims WHERE app = ? AND key = ? AND expires > ?",
                         (app, key, now)).fetchone()
        if row is not None:
            skipped[env.uuid] = row[0]
            continue
        db.execute("INSERT OR REPLACE INTO claims (app, key, holder, expires) VALUES (?, ?, ?, ?)",
                   (app, key, env.uuid, now + int(float(ttl) * 1000)))
    return skipped


def release_unique(db: sqlite3.Connection, app: str, envelopes: Iterable[Envelope | None]) -> None:
    """Give back the callers' unique keys of tasks that ended in error or cancel (see ``unique_owner``), each
    only while it still names its holder: a key claimed again since belongs to the new call."""
    rows = [(app, f"u:{env.queue}:{owner[0]}", owner[1]) for env in envelopes
            if env is not None and env.meta and (owner := unique_owner(env)) is not None]
    if rows:
        db.executemany("DELETE FROM claims WHERE app = ? AND key = ? AND holder = ?", rows)


def append_logs(db: sqlite3.Connection, app: str, queue: str, uuid: str, lines: Sequence[str], now: int,
                ttl_ms: int) -> None:
    """Captured log lines of one task (table ``logs``), expiring with its record; sweeps expired lines."""
    db.execute("DELETE FROM logs WHERE expires_at <= ?", (now,))
    expires = now + ttl_ms
    db.executemany("INSERT INTO logs (app, queue, uuid, line, expires_at) VALUES (?, ?, ?, ?, ?)",
                   [(app, queue, uuid, line, expires) for line in lines])
