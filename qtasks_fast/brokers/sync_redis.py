"""QTasks' Redis broker path (``qtasks.brokers.SyncRedisBroker``): our :class:`RedisBroker` with QTasks'
constructor, so ``QueueTasks(broker=SyncRedisBroker(name=..., url=...))`` works unchanged.

The broker carries its storage (``broker.storage``, as in QTasks; built from ``url`` when not given)
and shares its connection, so results are written in the same round trips as with
``broker_url=``; both see the same keys, so an app built either way reads the other's tasks.
The delivery contract is ours (streams, leases, at-least-once): see README "What survives what".
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.brokers.redis import RedisBroker
from qtasks_fast.config import GlobalConfig
from qtasks_fast.storages.redis import RedisStorage
from qtasks_fast.storages.sync_redis import DEFAULT_URL, SyncRedisStorage, refuse


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


__all__ = ["SyncRedisBroker"]
