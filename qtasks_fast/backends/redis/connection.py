"""The sync and async Redis clients of one URL, shared by the broker and the storage (so they can fuse writes).

Why a module of its own: it is the transport under ``script.Call`` (the one call path) that the broker, the
storage, the query side and the control half all hold, while the broker itself is the fast path's decisions
(what to send when). Kept apart from ``broker.py`` so that each reads on its own (and stays under ~600 lines);
``qtasks_fast.backends.redis.broker`` still exports ``RedisConnection`` for callers that import it from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio as aioredis

from qtasks_fast.backends.redis.direct import DirectConnections, SyncDirect
from qtasks_fast.url import redact

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.backends.redis.script import Via

__all__ = ["RedisConnection"]


class RedisConnection:
    """The sync and async clients of one URL, shared by broker and storage (so they can fuse writes)."""

    #: connections per client; callers beyond it wait for a free one instead of failing
    max_connections = 128

    def __init__(self, url: str, *, socket_timeout: float | None = 10.0, connect_timeout: float | None = 5.0,
                 **options: Any) -> None:
        self.url = url
        # A read timeout on every command, so that a hung Redis (SIGSTOPped, or a partition without a reset,
        # which keepalive does not notice for minutes) fails the call instead of blocking it forever. Blocking
        # commands wait in slices shorter than it (wait_slice), so it never cuts a BLPOP or an XREADGROUP
        # BLOCK. 0/None = no limit; a URL query (?socket_timeout=, ?socket_connect_timeout=) still wins.
        self._options = {"health_check_interval": 30, "socket_keepalive": True,
                         "socket_timeout": socket_timeout or None, "socket_connect_timeout": connect_timeout or None,
                         **options}
        self._slice: float | None = -1.0  # unknown until first asked
        self._sync: redis.Redis | None = None
        #: the RedisStorage built on this connection, if any: producer-side control ops (purge, dead-letter
        #: requeue) that are given no storage keep its records in step through it
        self.storage: Storage | None = None
        # one async client per event loop: a producer loop and a worker loop may share this object
        self._async: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self._directs: dict[aioredis.Redis, DirectConnections] = {}
        self._sync_direct: SyncDirect | None = None
        #: whether redis.lua goes as FCALL of its function library (Redis >= 7); False once the server said it
        #: has no FUNCTION/FCALL for us (Redis 6, an ACL): EVALSHA from then on (see script.Call._recover)
        self.functions = True

    def __repr__(self) -> str:
        return f"RedisConnection({redact(self.url)!r})"

    @property
    def sync(self) -> redis.Redis:
        if self._sync is None:
            pool = redis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=None, **self._options)
            self._sync = redis.Redis(connection_pool=pool)
        return self._sync

    @property
    def aio(self) -> aioredis.Redis:
        """The async client of the running event loop."""
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            apool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=None, **self._options)
            client = self._async[loop] = aioredis.Redis(connection_pool=apool)
        return client

    def _direct(self, client: aioredis.Redis) -> DirectConnections:
        direct = self._directs.get(client)
        if direct is None:
            direct = self._directs[client] = DirectConnections(client.connection_pool)
        return direct

    # The transports of script.Call (the one call path: callers build their commands with script.Script).
    async def execute(self, cmd: Sequence[Any], via: Via) -> Any:
        """Send ``cmd`` (a list of commands for ``pipe``/``hotpipe``) on the async client; the raw reply.

        ``direct``/``hot``/``hotpipe`` go on direct connections (see direct.py): the producer's round trips and
        the worker's fetch and settle, whose latency redis-py's command machinery would double."""
        client = self.aio
        if via == "pool":
            return await client.execute_command(*cmd)
        if via == "pipe":
            pipe = client.pipeline(transaction=False)
            for c in cmd:
                pipe.execute_command(*c)
            return await pipe.execute()
        if via == "hotpipe":
            return await self._direct(client).pipeline(cmd)
        return await self._direct(client).execute(cmd, retry_stale=via == "direct")

    def execute_sync(self, cmd: Sequence[Any], via: Via) -> Any:
        """:meth:`execute` on the blocking client (``hot``/``hotpipe`` are the worker's: async only)."""
        client = self.sync
        if via == "pool":
            return client.execute_command(*cmd)
        if via == "pipe":
            pipe = client.pipeline(transaction=False)
            for c in cmd:
                pipe.execute_command(*c)
            return pipe.execute()
        if via != "direct":
            raise ValueError(f"transport {via!r} is the worker's and async only: use 'direct' or 'pool'")
        if self._sync_direct is None:
            self._sync_direct = SyncDirect(client.connection_pool)
        return self._sync_direct.execute(cmd)

    @property
    def wait_slice(self) -> float | None:
        """The longest a blocking command may wait on the server (half the read timeout, None without one):
        its reply then always comes within the read timeout, so a long wait is never mistaken for a hung
        Redis, and a hung one is still noticed within the read timeout of the slice under way."""
        if self._slice is not None and self._slice < 0:
            timeout = self.sync.connection_pool.connection_kwargs.get("socket_timeout")
            self._slice = max(float(timeout) / 2, 0.01) if timeout else None
        return self._slice

    def slices(self, timeout: float) -> Iterator[float]:
        """The server-side timeouts of the BLPOPs that together wait ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            step = min(left, self.wait_slice or left)
            yield max(step, 0.001)  # BLPOP 0 would wait forever
            if step >= left:
                return

    async def aclose(self) -> None:
        """Close the async client of the running loop and its pool (other loops keep theirs)."""
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            direct = self._directs.pop(client, None)
            if direct is not None:
                await direct.aclose()
            # the pool was passed in, so the client would leave its connections open without this
            await client.aclose(close_connection_pool=True)

    def close_sync(self) -> None:
        """Disconnect the blocking client's connections (direct ones included); it reconnects if used again."""
        direct, self._sync_direct = self._sync_direct, None
        if direct is not None:
            direct.close()
        if self._sync is not None:
            self._sync.connection_pool.disconnect()
