"""QTasks' ``SyncDependsPlugin``/``AsyncDependsPlugin`` (and ``qtasks.plugins.depends.Depends``, ``ScopeEnum``).

    app.add_plugin(AsyncDependsPlugin(), trigger_names=["task_executor_args_replace", "worker_stop"])

QTasks' worker adds this plugin by default to fill ``Depends(...)`` parameters and close what they opened;
here the worker does that for every task by itself (:mod:`qtasks_fast.depends`), so adding the plugin the
QTasks way is accepted and changes nothing more. What differs: a ``scope="worker"`` dependency is created once
per worker process and shared by its tasks (QTasks creates one per task and closes them all at worker stop).
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.depends import Depends, ScopeEnum
from qtasks_fast.plugins.runtime import RuntimePlugin

__all__ = ["AsyncDependsPlugin", "Depends", "DependsPlugin", "ScopeEnum", "SyncDependsPlugin"]


class DependsPlugin(RuntimePlugin):
    """QTasks' depends plugin: built into every worker here (module doc)."""

    served_triggers = frozenset({"task_executor_args_replace", "task_executor_task_close", "worker_stop",
                                 "broker_stop", "storage_stop", "global_config_stop"})

    def attach(self, worker: Any) -> None:
        """Nothing to plug in: the worker resolves and closes dependencies for every task by itself."""


class SyncDependsPlugin(DependsPlugin):
    """QTasks' name for a sync app: the same plugin."""


class AsyncDependsPlugin(DependsPlugin):
    """QTasks' name for an async app: the same plugin."""
