"""Which failures are outages (a condition that time can fix) and how a loop waits one out.

One rule for the whole fleet: an outage never stops a worker, the supervisor or the
scheduler. They wait with capped exponential backoff and log one line when the outage
starts and one when it ends (:class:`Outage`), never one per attempt. Only what no retry
can fix (the app cannot be imported, invalid configuration, a broker that refuses this
client, a bug) ends a process.

Outages are :class:`~qtasks_fast.exceptions.BrokerUnavailable` (``BrokerFull`` included), which
each backend raises for its own client library's outages (see the rule in
:mod:`qtasks_fast.abc.broker`: Redis' ``READONLY``/``LOADING``/``OOM``..., SQLite's "database is
locked"), and the operating system's network errors. This module knows no client library.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time

from qtasks_fast.exceptions import BrokerFull, BrokerRefused, BrokerUnavailable

#: exception types that are outages whatever their message
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror, BrokerUnavailable)
#: errno values of a plain ``OSError`` that mean the network, not this host's files or permissions
TRANSIENT_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
                              errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
                              errno.EPIPE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.EAGAIN})


def transient(exc: BaseException) -> bool:
    """True when ``exc`` is an outage: retry later, do not crash and do not charge a delivery."""
    if isinstance(exc, BrokerRefused):
        return False
    if isinstance(exc, TRANSIENT_TYPES):
        return True
    if isinstance(exc, OSError):  # a missing file or a permission is no outage: time does not fix it
        return exc.errno in TRANSIENT_ERRNOS
    return False


def full(exc: BaseException) -> bool:
    """True when the broker refuses new work for lack of memory or space (``BrokerFull``)."""
    return isinstance(exc, BrokerFull)


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


def describe(exc: BaseException) -> str:
    """One line naming the cause (our broker errors' messages already say what to do)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
