"""QTasks' ``qtasks.brokers.AsyncRedisBroker`` path: the same broker as ``SyncRedisBroker``."""

from qtasks_fast.brokers.sync_redis import SyncRedisBroker


class AsyncRedisBroker(SyncRedisBroker):
    """QTasks' ``AsyncRedisBroker``: :class:`SyncRedisBroker` (our broker serves both clients)."""


__all__ = ["AsyncRedisBroker"]
