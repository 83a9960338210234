"""QTasks' ``qtasks.brokers.sync_redis`` path: :class:`~qtasks_fast.backends.redis.qtasks.SyncRedisBroker`."""

from qtasks_fast.backends.redis.qtasks import SyncRedisBroker

__all__ = ["SyncRedisBroker"]
