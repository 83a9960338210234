"""Which failures are outages (a condition that time can fix) and how a loop waits one out.

One rule for the whole fleet: an outage never stops a worker, the supervisor or the
scheduler. They wait with capped exponential backoff and log one line when the outage
starts and one when it ends (:class:`Outage`), never one per attempt. Only what no retry
can fix (the app cannot be imported, invalid configuration, a bug) ends a process.

Outages: the broker cannot be reached (refused, reset, timed out), and the error replies
Redis gives while it cannot serve writes or reads for a while: ``OOM`` (maxmemory with
``noeviction``), ``READONLY`` (a replica after a failover), ``LOADING`` (restart, loading its
data set), ``MASTERDOWN``, ``BUSY`` (a long script), ``TRYAGAIN``/``CLUSTERDOWN`` (cluster
resharding), ``NOREPLICAS``, ``MISCONF`` (snapshots failing: writes refused until the disk
is fixed). SQLite's "database is locked"/"busy" is one too.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sqlite3
import time

import redis

from qtasks_fast.exceptions import BrokerFull, BrokerUnavailable

#: exception types that are outages whatever their message
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror, redis.ConnectionError,
    redis.TimeoutError, BrokerUnavailable, BrokerFull)
#: errno values of a plain ``OSError`` that mean the network, not this host's files or permissions
TRANSIENT_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
                              errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                              errno.EPIPE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EAGAIN})
#: the first word of a Redis error reply that time can fix
TRANSIENT_REPLIES = frozenset({"OOM", "READONLY", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN", "CLUSTERDOWN",
                               "NOREPLICAS", "MISCONF"})
#: the classes redis-py parses some of those replies into: it strips the code from their message
#: (an OOM reply arrives as OutOfMemoryError("command not allowed when used memory > 'maxmemory'"))
_REPLY_TYPES: tuple[type[BaseException], ...] = tuple(
    getattr(redis.exceptions, name) for name in ("OutOfMemoryError", "ReadOnlyError", "TryAgainError",
                                                 "ClusterDownError", "MasterDownError")
    if hasattr(redis.exceptions, name))
_OOM: tuple[type[BaseException], ...] = tuple(
    getattr(redis.exceptions, n) for n in ("OutOfMemoryError",) if hasattr(redis.exceptions, n))


def transient(exc: BaseException) -> bool:
    """True when ``exc`` is an outage: retry later, do not crash and do not charge a delivery."""
    if isinstance(exc, TRANSIENT_TYPES):
        return True
    if isinstance(exc, OSError):  # a missing file or a permission is no outage: time does not fix it
        return exc.errno in TRANSIENT_ERRNOS
    if isinstance(exc, redis.ResponseError):
        return isinstance(exc, _REPLY_TYPES) or str(exc).split(" ", 1)[0] in TRANSIENT_REPLIES
    if isinstance(exc, sqlite3.OperationalError):
        msg = str(exc)
        return "locked" in msg or "busy" in msg
    return False


def full(exc: BaseException) -> bool:
    """True when ``exc`` is Redis refusing a write at ``maxmemory`` (``OOM command not allowed ...``)."""
    return isinstance(exc, _OOM) or (isinstance(exc, redis.ResponseError) and str(exc).startswith("OOM"))


class Outage:
    """Capped exponential backoff for one loop, logging the outage's start and end only.

    ``delay = outage.failed(exc)`` after each failure (the first logs a warning naming
    ``what`` and the cause), ``outage.ok()`` after a success (logs the recovery once).
    """

    def __init__(self, log: logging.Logger, what: str, first: float = 0.1, cap: float = 5.0) -> None:
        self.log, self.what, self.first, self.cap = log, what, first, cap
        self.delay = first
        self.since = 0.0  # monotonic start of the current outage, 0 when none
        self.attempts = 0

    @property
    def down(self) -> bool:
        return self.since > 0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; return how long to wait before the next attempt."""
        if not self.since:
            self.since = time.monotonic()
            self.log.warning("%s: %s; retrying with backoff up to %.0fs until it recovers", self.what,
                             describe(exc), self.cap)
        self.attempts += 1
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    async def wait(self, exc: BaseException) -> None:
        await asyncio.sleep(self.failed(exc))

    def ok(self) -> None:
        if self.since:
            self.log.info("%s: recovered after %.1fs (%d failed attempts)", self.what, time.monotonic() - self.since,
                          self.attempts)
            self.since, self.attempts, self.delay = 0.0, 0, self.first


def no_such_db(exc: BaseException) -> bool:
    """True when Redis refused the URL's database number (``SELECT`` past its ``databases`` setting)."""
    return isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc)


def describe(exc: BaseException) -> str:
    """One line naming the cause; for a full Redis or a database it does not have, what to do about it."""
    if full(exc):
        return ("Redis is at maxmemory and refuses writes (OOM): free memory, raise maxmemory, or lower "
                "result_ttl; nothing is lost meanwhile")
    if no_such_db(exc):
        return ("the broker URL names a Redis database this server does not have (DB index is out of range): "
                "use /0 to /15, or what the server's `databases` setting allows")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
