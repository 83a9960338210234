"""QTasks' ``qtasks.storages.async_redis`` path: :class:`~qtasks_fast.backends.redis.qtasks.AsyncRedisStorage`."""

from qtasks_fast.backends.redis.qtasks import AsyncRedisStorage

__all__ = ["AsyncRedisStorage"]
