"""QTasks' ``qtasks.storages.sync_redis`` path: :class:`~qtasks_fast.backends.redis.qtasks.SyncRedisStorage`."""

from qtasks_fast.backends.redis.qtasks import SyncRedisStorage

__all__ = ["SyncRedisStorage"]
