"""The GlobalConfig component of QTasks: named hashes of text values shared by every process of a project.

Layout as in QTasks, so both can share one Redis: ``set(name, key, value)`` writes field ``key`` of
the hash ``<project>:<config_name>:<name>`` (``config_name`` defaults to ``GlobalConfig``), and
``start()`` keeps ``<project>:<config_name>:main`` = ``{name, status: "running"}`` alive (a TTL of
``global_config_status_ttl`` seconds, refreshed every ``global_config_status_set_periodic``) until ``stop()``.
A worker calls both for the component its storage carries (``SyncRedisStorage(global_config=...)``), as
QTasks' storage does (:func:`qtasks_fast.worker.startup.global_config_call`).

``get_match(pattern)`` returns QTasks' shape, ``(cursor, dict)`` (QTasks returns Redis' ``HSCAN`` of the
hash ``<project>:<config_name>``, which nothing writes to, so it finds nothing): the cursor is always 0 (the
answer is complete) and the dict is ``{name: {key: value}}`` for every name matching the glob ``pattern``.
The names are those ``set`` wrote here (a set ``<project>:<config_name>@names``) plus those a QTasks
process wrote, found by a ``SCAN`` of the keys ``<project>:<config_name>:<pattern>``: a walk of the
keyspace, so ``get_match`` is for rare reads, not a per-task path. Differences from QTasks: the
in-memory store (``Sync/AsyncInMemoryGlobalConfig``, one per process, shared by instances of the same
project and config name) has no QTasks counterpart. The async classes run the sync ones in a thread:
one implementation, and a GlobalConfig call is rare and small.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

import redis

from qtasks_fast.schemas.global_config import GlobalConfigSchema

#: QTasks' defaults of ``QueueConfig.global_config_status_ttl`` / ``global_config_status_set_periodic``
STATUS_TTL, STATUS_EVERY = 20.0, 17.0
Value = str | bytes | int | float


class _MemoryStore:
    """Process-wide hashes (``{hash key: {field: text}}``) and, per project, the names it has set."""

    hashes: dict[str, dict[str, str]] = {}
    indexes: dict[str, set[str]] = {}
    lock = threading.Lock()

    def hset(self, name: str, mapping: Mapping[str, str], index: str | None = None) -> None:
        with self.lock:
            self.hashes.setdefault(name, {}).update(mapping)
            if index is not None:
                self.indexes.setdefault(index, set()).add(name)

    def hget(self, name: str, key: str) -> str | None:
        with self.lock:
            return self.hashes.get(name, {}).get(key)

    def hgetall(self, name: str) -> dict[str, str]:
        with self.lock:
            return dict(self.hashes.get(name, {}))

    def members(self, index: str, pattern: str) -> set[str]:
        """Every hash (the caller filters by name), as a ``SCAN`` of Redis would find them."""
        with self.lock:
            return set(self.hashes)

    def keep(self, name: str, ttl: float) -> None:
        """Nothing to refresh in memory: the status stays until :meth:`drop`."""

    def drop(self, name: str) -> None:
        with self.lock:
            self.hashes.pop(name, None)

    def close(self) -> None:
        pass


class GlobalConfigUnreachable(redis.ConnectionError):
    """Redis did not answer a GlobalConfig call: a ``redis.ConnectionError`` (what QTasks raises, so code catching
    that still does) whose one line says where it tried and what to do."""


def _where(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    return str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}")


def _answered(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` of :class:`_RedisStore`, with a connection failure turned into :class:`GlobalConfigUnreachable`."""

    @functools.wraps(method)
    def call(self: _RedisStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, GlobalConfigUnreachable):
                raise
            raise GlobalConfigUnreachable(
                f"GlobalConfig: Redis at {_where(self.client)} did not answer ({str(exc).rstrip('.')}): start it, or "
                "give the GlobalConfig the url= of the Redis the app uses") from exc

    return call


class _RedisStore:
    """The hashes in Redis; the project's names in a set beside them, so ``get_match`` never scans the keyspace."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @_answered
    def hset(self, name: str, mapping: Mapping[str, str], index: str | None = None) -> None:
        pipe = self.client.pipeline()
        pipe.hset(name, mapping=dict(mapping))  # type: ignore[arg-type]
        if index is not None:
            pipe.sadd(index, name)
        pipe.execute()

    @_answered
    def hget(self, name: str, key: str) -> str | None:
        return self.client.hget(name, key)  # type: ignore[return-value]

    @_answered
    def hgetall(self, name: str) -> dict[str, str]:
        return self.client.hgetall(name)  # type: ignore[return-value]

    @_answered
    def members(self, index: str, pattern: str) -> set[str]:
        """The names in ``index`` and the hashes matching the Redis glob ``pattern`` (names a QTasks process
        wrote are in no index)."""
        names: set[str] = set(self.client.smembers(index))  # type: ignore[arg-type]
        names.update(self.client.scan_iter(match=pattern, count=1000, _type="hash"))  # type: ignore[arg-type]
        return names

    @_answered
    def keep(self, name: str, ttl: float) -> None:
        self.client.expire(name, int(ttl))

    def drop(self, name: str) -> None:
        """The status expires by its TTL, as in QTasks (another process may have started it too)."""

    def close(self) -> None:
        self.client.close()


def _glob_escape(text: str) -> str:
    """``text`` matched literally by a Redis glob (a project name may hold ``*``, ``?``, ``[`` or ``\\``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: Value) -> str:
    """What Redis gives back for ``value`` (text), so both stores answer alike; other types are refused."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"GlobalConfig values are text or numbers (as Redis stores them), not {type(value).__name__}: "
                    "encode it first, e.g. json.dumps(value)")


class BaseGlobalConfig:
    """The sync component over a store; see the module doc for the layout."""

    def __init__(self, store: _MemoryStore | _RedisStore, name: str, config_name: str | None, log: Any,
                 config: Any, events: Any) -> None:
        for given, what in ((log, "log"), (events, "events")):
            if given is not None:
                raise TypeError(f"{type(self).__name__}({what}=...): not supported by qtasks_fast's GlobalConfig "
                                f"(it logs through the standard logging module); drop {what}=")
        self.name = name
        self.config_name = f"{name}:{config_name or 'GlobalConfig'}"
        #: the set of hash keys :meth:`set` wrote (QTasks keeps none; ``get_match`` reads it)
        self._index = f"{self.config_name}@names"
        self.config = config
        self.running = False
        self._store = store
        self._stop = threading.Event()

    def _key(self, name: str) -> str:
        return f"{self.config_name}:{name}"

    def set(self, name: str, key: str, value: Value) -> None:
        """Field ``key`` of ``name`` = ``value`` (stored as text)."""
        self._store.hset(self._key(name), {key: _text(value)}, index=self._index)

    def get(self, key: str, name: str) -> str | None:
        """Field ``name`` of hash ``key`` (QTasks' argument order: ``get("limits", "rps")``), or None."""
        return self._store.hget(self._key(key), name)

    def get_all(self, key: str) -> dict[str, str]:
        """Every field of hash ``key`` (empty when none)."""
        return self._store.hgetall(self._key(key))

    def get_match(self, match: str) -> tuple[int, dict[str, dict[str, str]]]:
        """QTasks' ``(cursor, dict)``: cursor 0 (complete) and ``{name: fields}`` of every name that matches the
        glob ``match`` (``*``, ``?``, ``[...]``) and has fields, whether this side or a QTasks process set it."""
        prefix = f"{self.config_name}:"
        found = {}
        for k in sorted(self._store.members(self._index, _glob_escape(prefix) + match)):
            if k.startswith(prefix) and fnmatch.fnmatchcase(k[len(prefix):], match):
                fields = self._store.hgetall(k)
                if fields:
                    found[k[len(prefix):]] = fields
        return 0, found

    def start(self) -> None:
        """Mark the project running (``get("main", "status") == "running"``) until :meth:`stop`."""
        ttl = float(getattr(self.config, "global_config_status_ttl", STATUS_TTL))
        every = float(getattr(self.config, "global_config_status_set_periodic", STATUS_EVERY))
        self._store.hset(self._key("main"), dataclasses.asdict(GlobalConfigSchema(name=self.name, status="running")))
        self._store.keep(self._key("main"), ttl)
        self.running = True
        self._stop.clear()
        threading.Thread(target=self._keep_status, args=(ttl, every), daemon=True,
                         name=f"qtasks-globalconfig-{self.name}").start()

    def _keep_status(self, ttl: float, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self._store.keep(self._key("main"), ttl)
            except redis.RedisError:  # an outage: the status lapses, as it should; the next beat restores it
                continue

    def stop(self) -> None:
        """Stop marking the project running (and release the connection)."""
        self.running = False
        self._stop.set()
        self._store.drop(self._key("main"))
        self._store.close()


class SyncRedisGlobalConfig(BaseGlobalConfig):
    """QTasks' ``SyncRedisGlobalConfig``: the component on Redis (``url`` or an own ``redis_connect`` client)."""

    def __init__(self, name: str = "QueueTasks", url: str = "redis://localhost:6379/0",
                 redis_connect: Any = None, config_name: str | None = None, log: Any = None,
                 config: Any = None, events: Any = None) -> None:
        super().__init__(_RedisStore(_sync_client(url, redis_connect)), name, config_name, log, config, events)
        self.url = url


class SyncInMemoryGlobalConfig(BaseGlobalConfig):
    """The component in this process' memory (tests, a single process); no QTasks counterpart."""

    def __init__(self, name: str = "QueueTasks", config_name: str | None = None, log: Any = None,
                 config: Any = None, events: Any = None) -> None:
        super().__init__(_MemoryStore(), name, config_name, log, config, events)


def _sync_client(url: str, given: Any) -> redis.Redis:
    """The client to use: ``given`` (a ``redis.asyncio.Redis`` becomes a sync client to the same server,
    since the async component runs the sync one in a thread), else one for ``url`` answering text."""
    if given is None:
        return redis.Redis.from_url(url, decode_responses=True)
    if isinstance(given, redis.Redis):
        return given
    from redis.asyncio import Redis as AsyncRedis

    if isinstance(given, AsyncRedis):
        pool = given.connection_pool
        accepted = inspect.signature(redis.Redis.__init__).parameters
        kw = {k: v for k, v in pool.connection_kwargs.items() if k in accepted}
        if "SSL" in pool.connection_class.__name__:
            kw["ssl"] = True
        return redis.Redis(**{**kw, "decode_responses": True})
    raise TypeError(f"redis_connect must be a redis.Redis or redis.asyncio.Redis client, not {type(given).__name__}")


class _Async:
    """The async face of a sync component: each call runs it in a thread."""

    _sync: BaseGlobalConfig

    def __getattr__(self, item: str) -> Any:  # name, config_name, running, url: the sync component's
        if item.startswith("_"):
            raise AttributeError(item)
        return getattr(self._sync, item)

    async def set(self, name: str, key: str, value: Value) -> None:
        await asyncio.to_thread(self._sync.set, name, key, value)

    async def get(self, key: str, name: str) -> str | None:
        return await asyncio.to_thread(self._sync.get, key, name)

    async def get_all(self, key: str) -> dict[str, str]:
        return await asyncio.to_thread(self._sync.get_all, key)

    async def get_match(self, match: str) -> tuple[int, dict[str, dict[str, str]]]:
        return await asyncio.to_thread(self._sync.get_match, match)

    async def start(self) -> None:
        await asyncio.to_thread(self._sync.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._sync.stop)


class AsyncRedisGlobalConfig(_Async):
    """QTasks' ``AsyncRedisGlobalConfig``: :class:`SyncRedisGlobalConfig` with coroutine methods."""

    def __init__(self, name: str = "QueueTasks", url: str = "redis://localhost:6379/0",
                 redis_connect: Any = None, config_name: str | None = None, log: Any = None,
                 config: Any = None, events: Any = None) -> None:
        self._sync = SyncRedisGlobalConfig(name, url, redis_connect, config_name, log, config, events)


class AsyncInMemoryGlobalConfig(_Async):
    """:class:`SyncInMemoryGlobalConfig` with coroutine methods."""

    def __init__(self, name: str = "QueueTasks", config_name: str | None = None, log: Any = None,
                 config: Any = None, events: Any = None) -> None:
        self._sync = SyncInMemoryGlobalConfig(name, config_name, log, config, events)
