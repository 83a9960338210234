"""QTasks' ``qtasks.brokers.async_redis`` path: :class:`~qtasks_fast.backends.redis.qtasks.AsyncRedisBroker`."""

from qtasks_fast.backends.redis.qtasks import AsyncRedisBroker

__all__ = ["AsyncRedisBroker"]
