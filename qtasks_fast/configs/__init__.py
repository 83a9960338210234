"""QTasks' ``qtasks.configs``: the GlobalConfig component (a shared key-value store) and ``QueueConfig``.

    gc = SyncRedisGlobalConfig(name="shop", url="redis://127.0.0.1:6379/0")
    gc.set(name="limits", key="rps", value="100")
    gc.get("limits", "rps")                 # '100' (Redis gives text back, so the in-memory store does too)
    gc.get_all("limits")                    # {'rps': '100'}
    gc.get_match("lim*")                    # (0, {'limits': {'rps': '100'}}): QTasks' (cursor, dict)

``QueueConfig`` is QTasks' name of the app's settings (:class:`qtasks_fast.config.GlobalConfig`); the
component classes are in :mod:`qtasks_fast.configs.base`.
"""

from qtasks_fast.configs.base import (
    AsyncInMemoryGlobalConfig,
    AsyncRedisGlobalConfig,
    BaseGlobalConfig,
    SyncInMemoryGlobalConfig,
    SyncRedisGlobalConfig,
)
from qtasks_fast.configs.config import QueueConfig

__all__ = ["AsyncInMemoryGlobalConfig", "AsyncRedisGlobalConfig", "BaseGlobalConfig", "QueueConfig",
           "SyncInMemoryGlobalConfig", "SyncRedisGlobalConfig"]
