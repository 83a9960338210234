"""QTasks' ``qtasks.storages.AsyncRedisStorage`` path: the same storage as ``SyncRedisStorage``."""

from qtasks_fast.storages.sync_redis import SyncRedisStorage


class AsyncRedisStorage(SyncRedisStorage):
    """QTasks' ``AsyncRedisStorage``: :class:`SyncRedisStorage` (our storage serves both clients)."""


__all__ = ["AsyncRedisStorage"]
