"""QTasks' ``qtasks.plugins`` package, here: the plugin machinery and the plugin-side names QTasks user code imports.

Why a package: QTasks code imports ``qtasks.plugins.base.BasePlugin`` and ``from qtasks.plugins import
AsyncState, Depends``; with only the import changed those must resolve here too. The machinery (``BasePlugin``,
``Plugins``, the trigger tables) lives in :mod:`qtasks_fast.plugins.base` and is re-exported unchanged, so
``from qtasks_fast.plugins import BasePlugin, TRIGGERS`` keeps working.

``SyncState``/``AsyncState`` and ``Depends`` are the ones of :mod:`qtasks_fast.depends`: the worker injects
them into any task whose parameters ask for them, as QTasks' worker does through the State and Depends plugins
it registers by default. Those plugin classes themselves (``SyncStatePlugin``, ``SyncRetryPlugin``,
``SyncPydanticWrapperPlugin``, ...) are not here yet (issue 11): the behaviour they give QTasks is built in
here (``retry=``, State/Depends injection, :mod:`qtasks_fast.contrib.pydantic`), see docs/from-qtasks.md.
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

__all__ = ["REPLACES", "TASK_TRIGGER_MIDDLEWARES", "TRIGGERS", "AsyncState", "AsyncgRPCPlugin", "BasePlugin",
           "Depends", "Plugins", "SyncState", "SyncgRPCPlugin", "add_plugin"]

#: ``SyncgRPCPlugin``/``AsyncgRPCPlugin`` (QTasks' ``qtasks.plugins`` names) load on first use: they need the
#: optional ``grpc`` extra, which ``import qtasks_fast.plugins`` must not
__getattr__ = lazy_names(__name__, {"SyncgRPCPlugin": "qtasks_fast.plugins.grpc",
                                    "AsyncgRPCPlugin": "qtasks_fast.plugins.grpc"})
