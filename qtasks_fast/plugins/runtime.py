"""The base of our counterparts of the plugins QTasks' worker registers by default (retry, state, pydantic
wrapper, depends): a plugin that plugs a piece of the worker's own implementation in, instead of being called
per task.

Why: in QTasks those behaviours *are* plugins (``worker.init_plugins`` adds them, and QTasks user code adds
its own instances: ``app.add_plugin(AsyncRetryPlugin(), trigger_names=["worker_task_error_retry"])``); here
the worker does them itself, settled atomically with the task's result. A :class:`RuntimePlugin` added the
QTasks way is accepted at the QTasks trigger names it serves (:attr:`served_triggers`, also its default when
``trigger_names`` is None) and, in each worker process, :meth:`attach` puts its piece in place before any
task runs (the worker's ``start(worker=...)`` of every plugin). It is never called per task: it costs a task
nothing.
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.plugins.base import BasePlugin


class RuntimePlugin(BasePlugin):
    """A plugin for one of QTasks' default plugins; subclasses set :attr:`served_triggers` and :meth:`attach`."""

    #: the QTasks trigger names QTasks registers this plugin at: accepted by ``add_plugin`` for it
    served_triggers: frozenset[str] = frozenset()

    async def start(self, **kwargs: Any) -> None:
        """A worker process starts: plug in (``worker`` is the :class:`~qtasks_fast.worker.worker.Worker`)."""
        worker = kwargs.get("worker")
        if worker is not None:
            self.attach(worker)

    def attach(self, worker: Any) -> None:
        """Put this plugin's piece into ``worker`` (its executor), before the worker runs a task."""
        raise NotImplementedError(f"{type(self).__name__}.attach: say what this plugin plugs into the worker")
