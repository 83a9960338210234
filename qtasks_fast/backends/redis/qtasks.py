"""QTasks' Redis paths (``qtasks.brokers.SyncRedisBroker``, ``qtasks.storages.SyncRedisStorage`` and their
``Async`` names): our :class:`RedisBroker`/:class:`RedisStorage` with QTasks' constructors, so
``QueueTasks(broker=SyncRedisBroker(name=..., url=...))`` works unchanged. ``qtasks_fast.brokers`` and
``qtasks_fast.storages`` re-export them under QTasks' module paths.

The broker carries its storage (``broker.storage``, as in QTasks; built from ``url`` when not given)
and shares its connection, so results are written in the same round trips as with
``broker_url=``; both see the same keys, so an app built either way reads the other's tasks.
The delivery contract is ours (streams, leases, at-least-once): see README "What survives what".

What QTasks' storage keeps its own way (``queue_process=`` key names, an external ``redis_connect``
client, ``log=``/``events=``) has no counterpart here and is refused with what to do; ``global_config``
(a :mod:`qtasks_fast.configs` component) is kept as ``storage.global_config``, where QTasks code looks.
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.backends.redis.broker import RedisBroker, RedisConnection
from qtasks_fast.backends.redis.storage import RedisStorage
from qtasks_fast.config import GlobalConfig

DEFAULT_URL = "redis://localhost:6379/0"


def refuse(cls: str, **given: Any) -> None:
    """One line for the first QTasks argument given that qtasks_fast cannot honour (never ignored silently)."""
    why = {
        "queue_name": "tasks choose their queue with @app.task(queue=...)",
        "queue_process": "records live next to their queue's streams",
        "redis_connect": "pass url= (the connection is built from it, sync and async)",
        "log": "qtasks_fast logs through the standard logging module",
        "events": "pass events to QueueTasks(events=...)",
    }
    for name, value in given.items():
        if value is not None:
            raise TypeError(f"{cls}({name}=...): not supported by qtasks_fast ({why[name]}); drop {name}=")


class SyncRedisStorage(RedisStorage):
    """QTasks' ``SyncRedisStorage``; one class for both clients (the app's client decides sync or async)."""

    def __init__(self, name: str = "QueueTasks", url: str = DEFAULT_URL, queue_process: str = "task_process",
                 redis_connect: Any = None, global_config: Any = None, log: Any = None,
                 config: GlobalConfig | None = None, events: Any = None) -> None:
        refuse(type(self).__name__, queue_process=None if queue_process == "task_process" else queue_process,
               redis_connect=redis_connect, log=log, events=events)
        config = config or GlobalConfig()
        conn = RedisConnection(url, socket_timeout=config.socket_timeout, connect_timeout=config.connect_timeout)
        super().__init__(url, app_name=name, connection=conn, result_ttl=config.result_ttl,
                         priority_levels=config.priority_levels)
        self.name = name
        self.config = config
        self.global_config = global_config


class SyncRedisBroker(RedisBroker):
    """QTasks' ``SyncRedisBroker``; one class for both clients (the app's client decides sync or async)."""

    def __init__(self, name: str = "QueueTasks", url: str | None = None, storage: RedisStorage | None = None,
                 queue_name: str = "task_queue", log: Any = None, config: GlobalConfig | None = None,
                 events: Any = None) -> None:
        refuse(type(self).__name__, queue_name=None if queue_name == "task_queue" else queue_name, log=log,
               events=events)
        config = config or GlobalConfig()
        if storage is None:
            storage = SyncRedisStorage(name=name, url=url or DEFAULT_URL, config=config)
        elif not isinstance(storage, RedisStorage):
            raise TypeError(f"{type(self).__name__}(storage=...): a Redis broker needs a Redis storage "
                            f"(SyncRedisStorage), not {type(storage).__name__}: its results are written with "
                            "the broker's own commands")
        elif url is not None and url != storage.url:
            raise ValueError(f"{type(self).__name__}: url= and the storage's url differ; give the storage's url "
                             "(or only one of them): broker and storage share one Redis")
        super().__init__(url or storage.url, app_name=name, connection=storage.conn,
                         priority_levels=config.priority_levels, lease_seconds=config.lease_seconds,
                         max_deliveries=config.max_deliveries, result_ttl=config.result_ttl,
                         index_results=config.index_results)
        self.unique_ttl = config.unique_ttl
        self.name = name
        self.config = config
        self.storage = storage


class AsyncRedisStorage(SyncRedisStorage):
    """QTasks' ``AsyncRedisStorage``: :class:`SyncRedisStorage` (our storage serves both clients)."""


class AsyncRedisBroker(SyncRedisBroker):
    """QTasks' ``AsyncRedisBroker``: :class:`SyncRedisBroker` (our broker serves both clients)."""


__all__ = ["AsyncRedisBroker", "AsyncRedisStorage", "SyncRedisBroker", "SyncRedisStorage"]
