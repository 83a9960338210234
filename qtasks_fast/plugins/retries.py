"""QTasks' ``SyncRetryPlugin``/``AsyncRetryPlugin``: the worker's retry decision as a plugin.

    app.add_plugin(AsyncRetryPlugin(), trigger_names=["worker_task_error_retry"])   # as in QTasks

QTasks' worker retries a failed task only through this plugin (it adds one by default); here the worker
retries by itself (the task's ``retry=``, ``retry_on_exc=``, backoff: :mod:`qtasks_fast.middlewares.retries`),
so adding the plugin keeps that behaviour, and the plugin *is* the worker's retry decision from then on:
:meth:`RetryPlugin.retry_child` decides for every failed call, and a subclass overriding it changes what is
retried. What differs from QTasks: the plugin returns the retry (an envelope) instead of enqueueing it, and
the worker enqueues it in the same settle that stores the failure, so a crash in between never loses nor
doubles the retry (at-least-once; QTasks' plugin enqueues from inside the failure path). A QTasks subclass
overriding ``_execute(broker, task_func, task_broker, trace)`` must be rewritten as :meth:`retry_child`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_fast.middlewares.retries import retry_child
from qtasks_fast.plugins.runtime import RuntimePlugin

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope

__all__ = ["AsyncRetryPlugin", "RetryPlugin", "SyncRetryPlugin"]


class RetryPlugin(RuntimePlugin):
    """Retries failed calls of tasks with ``retry=`` left (QTasks' retry plugin); override :meth:`retry_child`."""

    served_triggers = frozenset({"worker_task_error_retry"})

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)

    def retry_child(self, envelope: Envelope, task: Any, exc: BaseException) -> Envelope | None:
        """The retry of ``envelope`` (the call of ``task``, a ``TaskFunc`` or None) that raised ``exc``, or
        None for no retry. Ours: while its ``retry`` is > 0 and ``exc`` matches the task's ``retry_on_exc``."""
        return retry_child(envelope, task, exc)

    def attach(self, worker: Any) -> None:
        worker.executor.retry_child = self.retry_child


class SyncRetryPlugin(RetryPlugin):
    """QTasks' name for a sync app: the same plugin (one worker runs both kinds of task here)."""


class AsyncRetryPlugin(RetryPlugin):
    """QTasks' name for an async app: the same plugin."""
