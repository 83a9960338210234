"""redis-py's exceptions turned into ours, at the Redis backend's boundary (the rule: qtasks_fast.abc.broker).

Outages (time fixes them) become ``BrokerUnavailable``: the connection is refused, reset or timed out, or
Redis answers a reply that means "not now": ``READONLY`` (a replica after a failover), ``LOADING`` (restart,
loading its data set), ``MASTERDOWN``, ``BUSY`` (a long script), ``TRYAGAIN``/``CLUSTERDOWN`` (cluster
resharding), ``NOREPLICAS``, ``MISCONF`` (snapshots failing: writes refused until the disk is fixed).
``OOM`` (maxmemory with ``noeviction``) becomes ``BrokerFull``. A refusal of this client (wrong password, an
ACL without the commands, a database number the server lacks) becomes ``BrokerRefused``: no wait fixes it.
Any other error reply becomes a plain ``BrokerError`` (a bug or a misconfigured server: fatal).

:data:`at_boundary` wraps every contract method of a class (broker, storage, their capabilities and query
side) so nothing of redis-py leaves it; the core never imports redis.
"""

from __future__ import annotations

from typing import Any

import redis

from qtasks_fast import faults
from qtasks_fast.backends._boundary import boundary
from qtasks_fast.exceptions import BrokerError, BrokerFull, BrokerRefused, BrokerUnavailable
from qtasks_fast.url import redact

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
_REFUSED: tuple[type[BaseException], ...] = (redis.AuthenticationError, redis.exceptions.NoPermissionError)


def transient(exc: BaseException) -> bool:
    """True when ``exc`` (redis-py's or ours) is an outage: retry later."""
    if isinstance(exc, _REFUSED):  # redis-py's auth errors are connection errors by type
        return False
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if isinstance(exc, redis.ResponseError):
        return isinstance(exc, _REPLY_TYPES) or str(exc).split(" ", 1)[0] in TRANSIENT_REPLIES
    return faults.transient(exc)


def full(exc: BaseException) -> bool:
    """True when ``exc`` is Redis refusing a write at ``maxmemory`` (``OOM command not allowed ...``)."""
    return isinstance(exc, _OOM) or (isinstance(exc, redis.ResponseError) and str(exc).startswith("OOM"))


def no_such_db(exc: BaseException) -> bool:
    """True when Redis refused the URL's database number (``SELECT`` past its ``databases`` setting)."""
    return isinstance(exc, redis.ResponseError) and "DB index is out of range" in str(exc)


def describe(exc: BaseException) -> str:
    """One line naming the cause; for a full Redis, what to do about it."""
    if full(exc):
        return ("Redis is at maxmemory and refuses writes (OOM): free memory, raise maxmemory, or lower "
                "result_ttl; nothing is lost meanwhile")
    return faults.describe(exc)


def unreachable(url: str, exc: BaseException) -> BrokerError:
    """The error for a connection that failed: ``BrokerRefused`` when Redis refused this client's credentials
    or database, else ``BrokerUnavailable``."""
    if isinstance(exc, _REFUSED):
        return BrokerRefused(
            f"Redis at {redact(url)} refuses this client ({str(exc).rstrip('.')}): check the user and password in "
            "the broker URL (QTASKS_BROKER_URL or --broker-file) and the ACL of that user; waiting will not help")
    if no_such_db(exc):
        return BrokerRefused(
            f"the broker URL {redact(url)} names a Redis database this server does not have (DB index is out of "
            "range): use /0 to /15, or what the server's `databases` setting allows")
    if isinstance(exc, (redis.TimeoutError, TimeoutError)):  # connected, or connecting, but no answer in time
        return BrokerUnavailable(
            f"Redis at {redact(url)} did not answer in time ({exc}): is it hung, stopped or overloaded? "
            "Retry later; raise config.socket_timeout / connect_timeout (QTASKS_SOCKET_TIMEOUT, "
            "QTASKS_CONNECT_TIMEOUT) only if it is merely slow")
    return BrokerUnavailable(
        f"cannot reach Redis at {redact(url)}: {str(exc).rstrip('.')}. Is redis-server running, and is the URL "
        "right (--broker / QTASKS_BROKER_URL)?"
    )


def refused(url: str, exc: BaseException) -> BrokerError:
    """The error for an outage: ``BrokerFull`` when Redis is at maxmemory, ``BrokerUnavailable`` for a lost
    connection or another reply that time fixes."""
    if full(exc):
        return BrokerFull(
            f"Redis at {redact(url)} is full (used memory reached maxmemory, OOM) and refuses new tasks: free "
            "memory (stored results expire after result_ttl), raise maxmemory, lower result_ttl, or retry later")
    if isinstance(exc, redis.ResponseError) and not no_such_db(exc):
        return BrokerUnavailable(f"Redis at {redact(url)} refuses writes for now ({describe(exc)}): a failover, "
                                 "a restart loading its data or a failing disk; retry later")
    return unreachable(url, exc)


def outage(url: str, exc: BaseException) -> BaseException:
    """Ours for any redis-py error: :func:`refused` for an outage, ``BrokerRefused`` for a refused client,
    ``BrokerError`` for another error reply; anything else (not redis-py's) is returned as it is."""
    if not isinstance(exc, redis.RedisError):
        return exc
    if transient(exc):
        return refused(url, exc)
    if isinstance(exc, _REFUSED) or no_such_db(exc):
        return unreachable(url, exc)
    return BrokerError(f"Redis at {redact(url)} answered an error: {describe(exc)}")


def _ours(broker: Any, exc: BaseException) -> BaseException | None:
    """:func:`outage` for a redis-py error (the URL from ``broker.url``); None for any other exception."""
    return outage(broker.url, exc) if isinstance(exc, redis.RedisError) else None


#: wraps each contract method of a Redis class so no redis-py exception leaves it (see _boundary)
at_boundary = boundary(_ours)


__all__ = ["TRANSIENT_REPLIES", "at_boundary", "describe", "full", "no_such_db", "outage", "refused",
           "transient", "unreachable"]
