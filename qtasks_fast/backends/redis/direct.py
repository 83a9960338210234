"""Redis connections used without redis-py's pool and command machinery, for the round trips that
set a task's latency: the worker's blocking read, fetch and settle, and the producer's enqueue and
its wait for the result.

Why: redis-py's generic command path (pool checkout and release under a lock, async context
managers, observability hooks, the retry wrapper) costs as much CPU as the loopback round trip
itself: measured on the development VM, a sync ``EXISTS`` costs 87 µs of CPU through ``Redis``
and 37 µs sent on a connection directly. One ``add_task(..., timeout=)`` makes two such calls.

A free list is all the pooling needed: an event loop needs no lock, and ``list.pop``/``append`` are
atomic for threads. A connection in an unknown state (cancelled mid-read, broken pipe) is closed,
never reused. Connections are made by the client's own pool (``make_connection``), so AUTH, TLS
and the db number of the URL apply as usual, and at most the pool's ``max_connections`` are open
at once: a burst of callers beyond it waits for a free connection, as with redis-py's
``BlockingConnectionPool``, instead of opening one connection each.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: failures after which a command is sent again once on a fresh connection when the one it used had been
#: connected before (Redis restarted, or closed an idle connection): the command never reached a live server.
#: A read timeout is not one of them (see :func:`stale`): the server may have run the command and be slow
#: or hung; sending an enqueue again could run the task twice, and would only double a hung call's wait.
STALE = (RedisConnectionError, RedisTimeoutError, OSError)


def stale(exc: BaseException) -> bool:
    """True when ``exc`` (one of :data:`STALE`) says the connection was dead, not that the server was slow."""
    return not isinstance(exc, (RedisTimeoutError, TimeoutError))


async def send(conn: Any, packed: list[bytes]) -> None:
    """Write a packed command on a connected ``conn``, without redis-py's ``asyncio.wait_for`` around it.

    Why: with a socket timeout set, redis-py's async ``send_packed_command`` wraps the write in
    ``asyncio.wait_for``, which on Python < 3.12 runs it as a Task of its own: one more loop turn and a
    Task per command. Measured on the idle round trip of ``add_task(..., timeout=)``: +50-100 µs
    (p50 400 -> 460-520 µs). The write only fills the socket buffer (``drain`` waits only past its
    high-water mark); the read that follows has the timeout, so a hung server is still noticed.
    """
    write = getattr(conn, "_send_packed_command", None)
    if write is None:  # another redis-py: its public path
        await conn.send_packed_command(packed, check_health=False)
        return
    await write(packed)


class DirectConnections:
    """Connections of one event loop (worker and async producer).

    A read's timeout (the connection's ``socket_timeout``) is kept by one watchdog timer for all of them, not by
    redis-py's ``asyncio.timeout`` around each read: entering and leaving that context cost ~6.8 µs per read on
    the development VM, ~3 µs of it after the reply came in, on the path from a task's enqueue to its start
    (issue 16). A read still in progress past its deadline has its connection aborted and raises redis-py's
    ``TimeoutError``, as before (see :func:`stale`: never sent again); the watchdog looks every quarter of the
    timeout, so a hung server is noticed within 1.25 times it.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.free: list[Any] = []
        self.slots = asyncio.Semaphore(pool.max_connections)
        #: connection -> loop time by which its read under way must have returned
        self.deadlines: dict[Any, float] = {}
        self.expired: set[Any] = set()
        self._watch: asyncio.TimerHandle | None = None

    async def _read(self, conn: Any) -> Any:
        """``conn.read_response()`` within the connection's read timeout, kept by :meth:`_check`."""
        timeout = conn.socket_timeout
        if not timeout:
            return await conn.read_response()
        loop = asyncio.get_running_loop()
        self.deadlines[conn] = loop.time() + timeout
        if self._watch is None:
            self._watch = loop.call_later(timeout / 4, self._check, timeout / 4)
        try:
            return await conn.read_response(timeout=math.inf)  # no asyncio.timeout of its own
        except BaseException as exc:
            if conn in self.expired:
                raise RedisTimeoutError(f"Timeout reading from {conn._host_error()}") from exc
            raise
        finally:
            del self.deadlines[conn]
            self.expired.discard(conn)  # (a read that returned as its deadline passed: its aborted connection
            # fails at its next write, a stale connection like any other)

    def _check(self, period: float) -> None:
        """The watchdog: abort the connections whose read is past its deadline; look again while any is under
        way (a connection's ``socket_timeout`` may differ from the first's: a URL query)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn, deadline in list(self.deadlines.items()):
            if now >= deadline and conn not in self.expired:
                self.expired.add(conn)
                writer = getattr(conn, "_writer", None)
                if writer is not None:
                    writer.transport.abort()  # the read under way ends with a connection error, raised as a timeout
        self._watch = loop.call_later(period, self._check, period) if self.deadlines else None

    async def execute(self, cmd: Sequence[Any] | bytes, *, retry_stale: bool = False) -> Any:
        """Send ``cmd`` (or one command packed as RESP bytes already) and return the raw reply. ``retry_stale``: see
        :data:`STALE` (not for the worker's hot path, whose callers retry on their own terms)."""
        async with self.slots:
            while True:
                conn = self.free.pop() if self.free else self.pool.make_connection()
                was_connected = conn.is_connected
                try:
                    if not was_connected:
                        await conn.connect()
                    await send(conn, [cmd] if isinstance(cmd, bytes) else conn.pack_command(*cmd))
                    reply = await self._read(conn)
                except ResponseError:  # an error reply: the connection itself is fine
                    self.free.append(conn)
                    raise
                except STALE as exc:
                    await conn.disconnect()
                    if retry_stale and was_connected and stale(exc):
                        retry_stale = False
                        continue
                    raise
                except BaseException:
                    await conn.disconnect()
                    raise
                self.free.append(conn)
                return reply

    async def pipeline(self, cmds: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``cmds`` in one write and return their replies (an error reply raises, after all are read)."""
        async with self.slots:
            return await self._pipeline(cmds)

    async def _pipeline(self, cmds: Sequence[Sequence[Any]]) -> list[Any]:
        conn = self.free.pop() if self.free else self.pool.make_connection()
        try:
            if not conn.is_connected:
                await conn.connect()
            await send(conn, conn.pack_commands(cmds))
            replies = []
            error: ResponseError | None = None
            for _ in cmds:
                try:
                    replies.append(await self._read(conn))
                except ResponseError as exc:
                    error = error or exc
        except BaseException:
            await conn.disconnect()
            raise
        self.free.append(conn)
        if error is not None:
            raise error
        return replies

    async def aclose(self) -> None:
        free, self.free = self.free, []
        for conn in free:
            await conn.disconnect()


class SyncDirect:
    """The sync twin of :class:`DirectConnections`, shared by the threads of a sync producer."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.free: list[Any] = []
        self.slots = threading.BoundedSemaphore(pool.max_connections)

    def execute(self, cmd: Sequence[Any] | bytes) -> Any:
        """Send ``cmd`` (or one command packed as RESP bytes) and return the raw reply; once more on a fresh
        connection after a stale one."""
        with self.slots:
            return self._execute(cmd)

    def _execute(self, cmd: Sequence[Any] | bytes) -> Any:
        retry_stale = True
        while True:
            try:
                conn = self.free.pop()
            except IndexError:
                conn = self.pool.make_connection()
            was_connected = conn.is_connected
            try:
                packed = [cmd] if isinstance(cmd, bytes) else conn.pack_command(*cmd)
                conn.send_packed_command(packed, check_health=False)
                reply = conn.read_response()
            except ResponseError:
                self.free.append(conn)
                raise
            except STALE as exc:
                conn.disconnect()
                if retry_stale and was_connected and stale(exc):
                    retry_stale = False
                    continue
                raise
            except BaseException:
                conn.disconnect()
                raise
            self.free.append(conn)
            return reply

    def close(self) -> None:
        free, self.free = self.free, []
        for conn in free:
            conn.disconnect()
