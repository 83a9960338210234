"""QTasks' ``qtasks.plugins`` package, here: the plugin machinery and the plugin-side names QTasks user code imports.

Why a package: QTasks code imports ``qtasks.plugins.base.BasePlugin`` and ``from qtasks.plugins import
AsyncState, Depends``; with only the import changed those must resolve here too. The machinery (``BasePlugin``,
``Plugins``, the trigger tables) lives in :mod:`qtasks_fast.plugins.base` and is re-exported unchanged, so
``from qtasks_fast.plugins import BasePlugin, TRIGGERS`` keeps working.

``SyncState``/``AsyncState`` and ``Depends`` are the ones of :mod:`qtasks_fast.depends`: the worker injects
them into any task whose parameters ask for them. The plugins QTasks' worker registers by default (retry,
state, pydantic wrapper, depends) are here under QTasks' names, in modules named as QTasks' subpackages
(:mod:`.retries`, :mod:`.states`, :mod:`.pydantic`, :mod:`.depends`); each plugs its piece of our worker in
(:mod:`qtasks_fast.plugins.runtime`), so adding one the QTasks way has the QTasks effect. QTasks'
``SyncTestPlugin``/``AsyncTestPlugin`` (:mod:`.testing`) mark the records of ``@app.task(test=...)`` tasks.
"""

from __future__ import annotations

from qtasks_fast._lazy import lazy_names
from qtasks_fast.depends import AsyncState, Depends, SyncState
from qtasks_fast.plugins.base import (
    REPLACES,
    TASK_TRIGGER_MIDDLEWARES,
    TRIGGERS,
    BasePlugin,
    Plugins,
    add_plugin,
)
from qtasks_fast.plugins.depends import AsyncDependsPlugin, SyncDependsPlugin
from qtasks_fast.plugins.pydantic import AsyncPydanticWrapperPlugin, SyncPydanticWrapperPlugin
from qtasks_fast.plugins.retries import AsyncRetryPlugin, SyncRetryPlugin
from qtasks_fast.plugins.runtime import RuntimePlugin
from qtasks_fast.plugins.states import AsyncStatePlugin, SyncStatePlugin
from qtasks_fast.plugins.testing import AsyncTestPlugin, SyncTestPlugin

__all__ = ["REPLACES", "TASK_TRIGGER_MIDDLEWARES", "TRIGGERS", "AsyncDependsPlugin", "AsyncPydanticWrapperPlugin",
           "AsyncRetryPlugin", "AsyncState", "AsyncStatePlugin", "AsyncTestPlugin", "AsyncgRPCPlugin", "BasePlugin",
           "Depends", "Plugins", "RuntimePlugin", "SyncDependsPlugin", "SyncPydanticWrapperPlugin",
           "SyncRetryPlugin", "SyncState", "SyncStatePlugin", "SyncTestPlugin", "SyncgRPCPlugin", "add_plugin"]

#: ``SyncgRPCPlugin``/``AsyncgRPCPlugin`` (QTasks' ``qtasks.plugins`` names) load on first use: they need the
#: optional ``grpc`` extra, which ``import qtasks_fast.plugins`` must not
__getattr__ = lazy_names(__name__, {"SyncgRPCPlugin": "qtasks_fast.plugins.grpc",
                                    "AsyncgRPCPlugin": "qtasks_fast.plugins.grpc"})
