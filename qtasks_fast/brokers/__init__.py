"""QTasks' broker paths (``qtasks.brokers.SyncRedisBroker``, also as ``qtasks_fast.brokers.sync_redis`` /
``async_redis``), imported when first used so ``import qtasks_fast.brokers`` never imports redis.

The brokers themselves live with their backend (``qtasks_fast.backends.<name>``); a URL picks one through
the registry in :mod:`qtasks_fast.backends`.
"""

from qtasks_fast._lazy import lazy_names

#: QTasks' broker names, imported when first used, as QTasks does
_QTASKS_NAMES = {"SyncRedisBroker": "qtasks_fast.brokers.sync_redis",
                 "AsyncRedisBroker": "qtasks_fast.brokers.async_redis"}

__getattr__ = lazy_names(__name__, _QTASKS_NAMES)
