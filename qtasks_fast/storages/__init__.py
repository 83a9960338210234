"""QTasks' storage paths (``qtasks.storages.SyncRedisStorage``/``AsyncRedisStorage``), imported when first used
so ``import qtasks_fast.storages`` never imports redis. Storages live with their backend
(``qtasks_fast.backends.<name>``)."""

from qtasks_fast._lazy import lazy_names

#: QTasks' storage names (``qtasks.storages.SyncRedisStorage``)
_QTASKS_NAMES = {"SyncRedisStorage": "qtasks_fast.storages.sync_redis",
                 "AsyncRedisStorage": "qtasks_fast.storages.async_redis"}

__getattr__ = lazy_names(__name__, _QTASKS_NAMES)
