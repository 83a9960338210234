"""Storage implementations; QTasks' ``SyncRedisStorage``/``AsyncRedisStorage`` names, imported when first used."""

#: QTasks' storage names (``qtasks.storages.SyncRedisStorage``)
_QTASKS_NAMES = {"SyncRedisStorage": "qtasks_fast.storages.sync_redis",
                 "AsyncRedisStorage": "qtasks_fast.storages.async_redis"}


def __getattr__(name: str) -> object:
    if name in _QTASKS_NAMES:
        import importlib

        return getattr(importlib.import_module(_QTASKS_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
