"""QTasks' Redis storage path (``qtasks.storages.SyncRedisStorage``): our :class:`RedisStorage` with QTasks'
constructor, so ``SyncRedisStorage(name=..., url=...)`` passed to a QTasks-style broker works unchanged.

What QTasks' storage keeps its own way (``queue_process=`` key names, an external ``redis_connect``
client, ``log=``/``events=``) has no counterpart here and is refused with what to do; ``global_config``
(a :mod:`qtasks_fast.configs` component) is kept as ``storage.global_config``, where QTasks code looks.
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.brokers.redis import RedisConnection
from qtasks_fast.config import GlobalConfig
from qtasks_fast.storages.redis import RedisStorage

DEFAULT_URL = "redis://localhost:6379/0"


def refuse(cls: str, **given: Any) -> None:
    """One line for the first QTasks argument given that qtasks_fast cannot honour (never ignored silently)."""
    why = {
        "queue_name": "tasks choose their queue with @app.task(queue=...)",
        "queue_process": "records live next to their queue's streams",
        "redis_connect": "pass url= (the connection is built from it, sync and async)",
        "log": "qtasks_fast logs through the standard logging module",
        "events": "pass events to QueueTasks(events=...)",
    }
    for name, value in given.items():
        if value is not None:
            raise TypeError(f"{cls}({name}=...): not supported by qtasks_fast ({why[name]}); drop {name}=")


class SyncRedisStorage(RedisStorage):
    """QTasks' ``SyncRedisStorage``; one class for both clients (the app's client decides sync or async)."""

    def __init__(self, name: str = "QueueTasks", url: str = DEFAULT_URL, queue_process: str = "task_process",
                 redis_connect: Any = None, global_config: Any = None, log: Any = None,
                 config: GlobalConfig | None = None, events: Any = None) -> None:
        refuse(type(self).__name__, queue_process=None if queue_process == "task_process" else queue_process,
               redis_connect=redis_connect, log=log, events=events)
        config = config or GlobalConfig()
        conn = RedisConnection(url, socket_timeout=config.socket_timeout, connect_timeout=config.connect_timeout)
        super().__init__(url, app_name=name, connection=conn, result_ttl=config.result_ttl,
                         priority_levels=config.priority_levels)
        self.name = name
        self.config = config
        self.global_config = global_config


__all__ = ["SyncRedisStorage"]
