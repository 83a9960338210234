"""QTasks' ``qtasks.registries``: ``SyncTask`` / ``AsyncTask``, the names QTasks code gives its tasks.

In QTasks one object is both what ``@app.task`` returns and the ``self`` of an ``echo=True`` task. Here those
are :class:`~qtasks_fast.task.TaskFunc` and :class:`~qtasks_fast.worker.context.EchoTask` (the registered task
plus this call's ``ctx``, reading everything else through to it), and a sync and an async app share them. So
``SyncTask`` and ``AsyncTask`` are not classes of their own: ``isinstance`` and ``issubclass`` accept either
of ours, and annotations such as ``def work(self: AsyncTask)`` read as in QTasks. Tasks are made by
``@app.task``; building one by hand is refused. QTasks' ``TaskRegistry`` (its global shared-task list) is
:mod:`.task_registry`'s, a view of the shared tasks :func:`qtasks_fast.shared_task` keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtasks_fast.registries.task_registry import TaskRegistry
from qtasks_fast.task import TaskFunc
from qtasks_fast.worker.context import EchoTask

if TYPE_CHECKING:
    from qtasks_fast.worker.context import TaskContext


class _TaskKind(type):
    """Makes ``isinstance(x, SyncTask)`` true for the objects QTasks' ``SyncTask`` stands for here."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, (TaskFunc, EchoTask))

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, (TaskFunc, EchoTask))


class SyncTask(TaskFunc, metaclass=_TaskKind):
    """A task of the app (see the module docstring); ``ctx`` is there on an echo task's ``self``."""

    ctx: TaskContext

    def __new__(cls, *args: Any, **kwargs: Any) -> SyncTask:
        raise TypeError(f"{cls.__name__} is QTasks' name of a task here: make tasks with @app.task")


class AsyncTask(SyncTask):
    """QTasks' ``AsyncTask``: the same as :class:`SyncTask` (one kind of task serves both clients here)."""


__all__ = ["AsyncTask", "SyncTask", "TaskRegistry"]
