"""The PostgreSQL connection shared by broker and storage: one asyncpg pool per event loop, the schema, the
error boundary and the LISTEN fan-out.

Why a pool per loop: an asyncpg connection belongs to the loop that opened it. A worker has one loop; the sync
client runs the same coroutines on its helper loop (:mod:`qtasks_fast.portal`), so there is one
implementation per operation and no blocking twin. asyncpg prepares and caches every statement per connection,
so the hot statements are parsed once per connection.

Every connection has ``search_path`` set to the backend's schema (``?schema=`` in the URL, default
``qtasks_fast``), so the SQL names tables unqualified. The schema's migrations run once per process, before
the first pool of a database is used (:mod:`~qtasks_fast.backends.postgres.migrations`).
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from qtasks_fast.backends._boundary import boundary
from qtasks_fast.exceptions import BrokerError, BrokerFull, BrokerRefused, BrokerUnavailable, ConfigError
from qtasks_fast.log import get_logger
from qtasks_fast.url import redact

log = get_logger("postgres")
DEFAULT_SCHEMA = "qtasks_fast"
#: the NOTIFY channel of a schema: wake-ups of idle fetches, finished awaited tasks, cancels
CHANNEL_PREFIX = "qtasks_fast:"
#: SQLSTATE classes time fixes: connection exceptions, insufficient resources, operator intervention
#: (admin shutdown, crash shutdown, cannot connect now), lock not available, serialization/deadlock
_TRANSIENT_CLASSES = ("08", "53", "57")
_TRANSIENT_STATES = frozenset({"55P03", "40001", "40P01"})
#: refused: invalid authorization, insufficient privilege, invalid catalog (no such database)
_REFUSED_STATES = frozenset({"28000", "28P01", "42501", "3D000"})
#: pools and listeners inherited over ``fork``: kept referenced, so the child's garbage collector never aborts
#: (or warns about) connections whose sockets the parent still uses
_abandoned: list[object] = []


#: the URL's query parameters: ours (schema), asyncpg's own, and the server settings users give there
#: (``synchronous_commit=on`` makes the worker's claims and settles durable too, see :meth:`PgDb.tx`)
_QUERY_KEYS = frozenset({"schema", "host", "port", "dbname", "database", "user", "password", "passfile", "sslmode",
                         "sslcert", "sslkey", "sslrootcert", "sslnegotiation", "sslcrl", "sslpassword",
                         "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
                         "krbsrvname", "gsslib", "service", "application_name",
                         "synchronous_commit", "lock_timeout", "statement_timeout"})
#: how long a statement of ours waits for a lock another session holds before it gives up (``BrokerUnavailable``
#: naming the lock wait): a producer behind a forgotten ``LOCK TABLE`` or a long migration gets a clear error
#: instead of hanging; ``?lock_timeout=`` in the URL changes it (PostgreSQL units, ``0`` waits for ever)
DEFAULT_LOCK_TIMEOUT = "10s"
_TIMEOUTS = ("lock_timeout", "statement_timeout")
_DURATION = re.compile(r"\d+(\.\d+)?\s*(us|ms|s|min|h|d)?")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def now_ms() -> int:
    return int(time.time() * 1000)


def split_url(url: str) -> tuple[str, str]:
    """``(dsn for asyncpg, schema)``: the ``schema`` query parameter is ours, not a server setting.

    The URL is checked here, at start, so a typo is one :class:`ConfigError` line, not a raw server error per
    call (asyncpg sends an unknown parameter to the server as a setting) nor a "retry later" for ever."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"the port of the PostgreSQL URL {redact(url)} is not a number; fix the URL") from None
    for k, v in query:
        if k not in _QUERY_KEYS:
            raise ConfigError(f"unknown query parameter {k!r} in the PostgreSQL URL {redact(url)}; use "
                              f"{', '.join(sorted(_QUERY_KEYS))}") from None
        if k == "sslmode" and v not in _SSLMODES:
            raise ConfigError(f"sslmode={v!r} in the PostgreSQL URL {redact(url)} is not one of "
                              f"{', '.join(_SSLMODES)}") from None
        if k == "port" and not v.isdigit():
            raise ConfigError(f"the port of the PostgreSQL URL {redact(url)} is not a number; fix the URL")
        if k in _TIMEOUTS and not _DURATION.fullmatch(v):
            raise ConfigError(f"{k}={v!r} in the PostgreSQL URL {redact(url)} is not a duration: write it like "
                              f"{k}=10s, {k}=500ms or {k}=0 (no limit)")
    schema = next((v for k, v in query if k == "schema"), "") or DEFAULT_SCHEMA
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def ours(backend: Any, exc: BaseException) -> BaseException | None:
    """asyncpg's failures as ours (the rule: qtasks_fast.abc.broker); None for anything else."""
    where = redact(getattr(getattr(backend, "db", None), "url", "") or "PostgreSQL")
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, (BrokerError,)):
        return None
    if isinstance(exc, asyncpg.exceptions.DiskFullError):
        return BrokerFull(f"PostgreSQL {where} cannot grow ({exc}): free disk space, lower result_ttl, or retry later")
    if state == "55P03":  # lock_not_available: our lock_timeout ran out behind another session's lock
        schema = getattr(getattr(backend, "db", None), "schema", "?")
        return BrokerUnavailable(f"PostgreSQL {where}: gave up waiting for a lock another session holds on a table "
                                 f"of schema {schema!r} (lock_timeout={_setting(backend, 'lock_timeout')}); retry "
                                 "later, or find the holder in pg_locks / pg_stat_activity (?lock_timeout= in the URL "
                                 "sets the wait)")
    if state == "57014" and "statement timeout" in str(exc):
        return BrokerUnavailable(f"PostgreSQL {where}: a statement ran longer than statement_timeout="
                                 f"{_setting(backend, 'statement_timeout')} (a busy server, or a lock held); retry "
                                 "later, or raise ?statement_timeout= in the URL")
    if state in _REFUSED_STATES:
        return BrokerRefused(f"PostgreSQL {where} refused this client ({exc}); fix the URL, the role or the "
                             "database")
    if isinstance(exc, (asyncpg.exceptions.ConnectionDoesNotExistError, asyncpg.exceptions.InterfaceError,
                        asyncpg.exceptions.InternalClientError, asyncpg.exceptions.CannotConnectNowError, OSError,
                        asyncio.TimeoutError)) or (
            isinstance(state, str) and (state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES)):
        return BrokerUnavailable(f"PostgreSQL {where} is not reachable or not ready ({type(exc).__name__}: "
                                 f"{exc}); retry later")
    return None


def _setting(backend: Any, name: str) -> str:
    """The value of ``name`` our pools set, for an error line (the server's own when the URL sets none)."""
    return str(getattr(getattr(backend, "db", None), "settings", {}).get(name, "(the server's)"))


#: wraps each contract method of a PostgreSQL class so asyncpg's failures leave it as ours
at_boundary = boundary(ours)


class PgDb:
    """One database and schema, shared by the brokers and storages built on the same URL in a process."""

    _shared: dict[tuple[str, str], PgDb] = {}
    _shared_lock = threading.Lock()

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        dsn, self.schema = split_url(url)
        # the timeouts are set per connection by our pools (server_settings), with our default lock_timeout
        parts = urlsplit(dsn)
        query = parse_qsl(parts.query, keep_blank_values=True)
        #: the session settings every pooled connection gets (besides search_path): the wait for a lock, and the
        #: longest statement when the URL sets one
        self.settings: dict[str, str] = {"lock_timeout": DEFAULT_LOCK_TIMEOUT}
        self.settings.update((k, v) for k, v in query if k in _TIMEOUTS)
        self.dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in _TIMEOUTS])))
        self.channel = CHANNEL_PREFIX + self.schema
        #: every connection's search path: the schema (quoted: used as written), then pg_temp, so a TEMP table of a
        #: caller's connection (a transactional enqueue) never shadows ours (pg_temp is searched first otherwise)
        self.search_path = '"{}", pg_temp'.format(self.schema.replace('"', '""'))
        self._identity: tuple[str, int] | None = None
        #: ``?synchronous_commit=`` given: the worker's claims and settles keep it (not ``off``)
        self._commit_set = any(k == "synchronous_commit" for k, _ in parse_qsl(urlsplit(url).query))
        self.pool_size = pool_size
        #: per (loop, durable): the worker's claims and settles use a pool of their own (see :meth:`tx`)
        self._pools: dict[tuple[int, bool], tuple[asyncio.AbstractEventLoop, asyncpg.Pool]] = {}
        self._listeners: dict[int, Listener] = {}
        self._migrated_pid = 0
        self._pid = os.getpid()

    @staticmethod
    def translate(backend: Any, exc: BaseException) -> BaseException | None:
        """:func:`ours`, for code of this package that must not import this module (migrations)."""
        return ours(backend, exc)

    @classmethod
    def for_url(cls, url: str) -> PgDb:
        dsn_schema = split_url(url)
        with cls._shared_lock:
            db = cls._shared.get(dsn_schema)
            if db is None:
                db = cls._shared[dsn_schema] = cls(url)
            return db

    def _fresh(self) -> None:
        """Drop what was inherited over ``fork`` (a connection must not cross one)."""
        if self._pid != os.getpid():
            _abandoned.extend((self._pools, self._listeners))
            self._pools, self._listeners, self._pid = {}, {}, os.getpid()

    async def connect(self) -> asyncpg.Connection:
        """A plain connection (listener, migrations) with the schema on its search path."""
        return await asyncpg.connect(self.dsn, server_settings={"search_path": self.search_path},
                                     timeout=10)

    async def pool(self, durable: bool = True) -> asyncpg.Pool:
        """This loop's pool (made on first use; the schema migrated first, once per process)."""
        self._fresh()
        loop = asyncio.get_running_loop()
        got = self._pools.get((id(loop), durable))
        if got is not None and got[0] is loop:
            return got[1]
        for key, (old, _) in list(self._pools.items()):
            if old.is_closed():
                del self._pools[key]
        if self._migrated_pid != os.getpid():
            from qtasks_fast.backends.postgres.migrations import migrate

            conn = await self.connect()
            try:
                await migrate(conn, self.schema)
            finally:
                await conn.close()
            self._migrated_pid = os.getpid()
        fast = not durable and not self._commit_set
        settings = {"search_path": self.search_path, **self.settings,
                    **({"synchronous_commit": "off"} if fast else {})}
        pool = await asyncpg.create_pool(self.dsn, min_size=0, max_size=self.pool_size, timeout=10,
                                         server_settings=settings, reset=_keep_session)
        assert pool is not None
        self._pools[(id(loop), durable)] = (loop, pool)
        await _closed_with_loop(pool.terminate)
        return pool

    @asynccontextmanager
    async def tx(self, durable: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A connection of this loop's pool inside a transaction (committed on exit, rolled back on error).

        ``durable=False`` (a worker's claim and settle) commits without waiting for the WAL flush
        (``synchronous_commit = off``, set once per connection of a pool of its own): a server crash may then
        forget the last fraction of a second of claims and settles, which only hands those messages out again
        (at-least-once holds: the worker takes back what it held when its next fetch fails, see
        ``PgBroker.recover``); an enqueue is always durable. ``?synchronous_commit=on`` in the URL keeps every
        commit durable, for a price in claim and settle latency."""
        async with self.acquire(durable) as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def acquire(self, durable: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A connection of this loop's pool that was alive when handed out: a pooled connection the server closed
        while it sat idle (a restart, an admin's ``pg_terminate_backend``) is replaced before anything is sent on
        it, so the first call after a restart succeeds instead of failing (the loop may not have run since the
        server's goodbye arrived, so asyncpg does not know yet; see :func:`_stale`)."""
        pool = await self.pool(durable)
        for _ in range(self.pool_size + 1):
            conn = await pool.acquire()
            if not _stale(conn):
                break
            conn.terminate()  # its holder in the pool reconnects on the next acquire
            await pool.release(conn)
        else:  # every connection was stale: this one is new (the pool reconnected it)
            conn = await pool.acquire()
        try:
            yield conn
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def one(self, durable: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A connection of this loop's pool with no transaction opened: for ONE statement, atomic by itself (its
        own implicit transaction), which saves the two round trips of ``BEGIN`` and ``COMMIT`` — a third of a
        fused settle's and most of a claim's at the drain's batch sizes. ``durable`` as for :meth:`tx`; alive when
        handed out, as :meth:`acquire` makes sure."""
        async with self.acquire(durable) as conn:
            yield conn

    async def identity(self) -> tuple[str, int]:
        """``(database, server's system identifier)`` of this URL (read once per process): a caller's connection
        must point to the same for a transactional enqueue."""
        if self._identity is None:
            row = await (await self.pool()).fetchrow(
                "SELECT current_database() AS db, (SELECT system_identifier FROM pg_control_system()) AS sid")
            self._identity = (row["db"], row["sid"])
        return self._identity

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.acquire() as conn:
            return await conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return await conn.execute(sql, *args)

    async def listener(self) -> Listener:
        """This loop's LISTEN connection (one per loop, shared by every waiter of the loop)."""
        self._fresh()
        loop = asyncio.get_running_loop()
        got = self._listeners.get(id(loop))
        if got is None or got.loop is not loop or got.broken:
            got = self._listeners[id(loop)] = Listener(self, loop)
        await got.ready()
        return got

    def terminate_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop ``loop``'s pool and listener at once, from any thread (the sync client's ``close()``, which may run on
        that very loop: it cannot wait for a graceful close there)."""
        self._fresh()
        pools = [self._pools.pop((id(loop), durable), None) for durable in (True, False)]
        lst = self._listeners.pop(id(loop), None)

        def terminate() -> None:
            for got in pools:
                if got is not None and got[0] is loop:
                    got[1].terminate()
            if lst is not None and lst.loop is loop:
                lst.terminate()
        if loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            terminate()
        else:
            loop.call_soon_threadsafe(terminate)

    async def close(self) -> None:
        """Close this loop's pool and listener (other loops' close with their loops)."""
        self._fresh()
        loop = asyncio.get_running_loop()
        for durable in (True, False):
            got = self._pools.pop((id(loop), durable), None)
            if got is not None and got[0] is loop:
                await got[1].close()
        lst = self._listeners.pop(id(loop), None)
        if lst is not None and lst.loop is loop:
            await lst.close()


def _stale(conn: Any) -> bool:
    """True when an idle connection has unread input: the server's goodbye (an error, then end of file) after a
    restart or a terminated backend, which asyncpg reads only when the loop next runs. A pooled connection
    neither listens nor waits for anything, so any input is a reason not to trust it (a spurious case costs
    one reconnect). One ``poll`` call, no round trip."""
    if conn.is_closed():
        return True
    inner = getattr(conn, "_con", conn)  # a pool's proxy
    transport = getattr(inner, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    if not hasattr(select, "poll"):  # Windows: select() takes sockets of any number there
        return bool(select.select([sock.fileno()], [], [], 0)[0])
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


#: the finalizers of :func:`_closed_with_loop`, kept alive until their loop shuts them down
_finalizers: set[Any] = set()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pools' reset on release: nothing to send. asyncpg's default (``pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL``) is a round trip after every statement or transaction, as many as the work itself for
    a claim; none of it applies here: the backend never takes session locks, cursors or LISTENs on a pooled
    connection, and sets nothing beyond a transaction (``SET LOCAL``, ``set_config(..., true)``). An open
    transaction is still rolled back on release (asyncpg does that before this hook)."""


async def _closed_with_loop(terminate: Callable[[], None]) -> None:
    """Have ``terminate`` run when the running loop shuts down (``asyncio.run`` / ``uvloop.run`` end by finalizing
    every async generator still open on the loop, while it still runs): a pool or listener made on a loop that a
    caller then ends would otherwise keep its connections open until the process exits, and a process calling
    ``asyncio.run`` per request (or a test suite) runs the server out of connections."""

    async def finalizer() -> AsyncIterator[None]:
        try:
            yield
        finally:
            _finalizers.discard(gen)
            terminate()

    gen = finalizer()
    _finalizers.add(gen)
    await gen.__anext__()


class Listener:
    """One ``LISTEN`` connection fanning notifications out to this loop's waiters by payload.

    Payloads: ``q:<app>:<queue>`` new work, ``d:<uuid>`` a finished awaited task, ``c:<app>`` a cancel request.
    A waiter registers the payloads it cares about and gets an :class:`asyncio.Event` set on each; a lost
    connection sets every event (waiters re-read the tables) and the next use reconnects.
    """

    def __init__(self, db: PgDb, loop: asyncio.AbstractEventLoop) -> None:
        self.db, self.loop = db, loop
        self.conn: asyncpg.Connection | None = None
        self.broken = False
        self._lock = asyncio.Lock()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    async def ready(self) -> None:
        if self.conn is not None:
            return
        async with self._lock:
            if self.conn is None and not self.broken:
                conn = await self.db.connect()
                await _closed_with_loop(self.terminate)
                await conn.add_listener(self.db.channel, self._on_notify)
                conn.add_termination_listener(self._on_lost)
                self.conn = conn

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for ev in self._waiters.get(payload, ()):
            ev.set()

    def _on_lost(self, _conn: Any) -> None:
        self.broken = True
        for events in self._waiters.values():
            for ev in events:
                ev.set()

    def watch(self, payload: str, event: asyncio.Event) -> Callable[[], None]:
        """Set ``event`` on each notification ``payload``; returns the function that stops it."""
        self._waiters.setdefault(payload, set()).add(event)

        def stop() -> None:
            events = self._waiters.get(payload)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[payload]
        return stop

    def terminate(self) -> None:
        self.broken = True
        if self.conn is not None:
            conn, self.conn = self.conn, None
            conn.terminate()

    async def close(self) -> None:
        self.broken = True
        if self.conn is not None:
            conn, self.conn = self.conn, None
            try:
                await conn.close(timeout=2)
            except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
                conn.terminate()


@asynccontextmanager
async def watching(db: PgDb, payloads: list[str]) -> AsyncIterator[asyncio.Event]:
    """An event set when one of ``payloads`` is notified. Enter it *before* reading the tables, then wait on it:
    a notification between the read and the wait is not lost. A listener that cannot connect gives an event
    that is never set (callers then wait their timeout or their own due time, and re-read)."""
    event = asyncio.Event()
    try:
        lst: Listener | None = await db.listener()
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        lst = None
    stops = [lst.watch(p, event) for p in payloads] if lst is not None else []
    try:
        yield event
    finally:
        for stop in stops:
            stop()


async def listen(db: PgDb, payloads: list[str],
                 event: asyncio.Event) -> tuple[Listener | None, list[Callable[[], None]]]:
    """Set ``event`` on each of ``payloads`` for as long as the caller keeps it (unlike :func:`watching`, across
    calls): ``(the listener, the functions that stop it)``, the listener None when it cannot connect. A lost
    listener sets the event; the caller then listens again (a reconnect) before it re-reads the tables."""
    try:
        lst = await db.listener()
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return None, []
    return lst, [lst.watch(p, event) for p in payloads]


async def wait_set(event: asyncio.Event, timeout: float) -> None:
    """Wait for ``event`` at most ``timeout`` seconds, leaving it set (the caller clears it when it re-reads)."""
    if timeout > 0 and not event.is_set():
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True when it was set (and clears it)."""
    if timeout <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        return False
    event.clear()
    return True
