"""``TaskManager``: one producer-side hook that sees every task before it is sent, and may change it.

    from qtasks_fast.components.task_manager import TaskManager

    class Limits(TaskManager):
        def mutate(self, task):
            if task.name == "heavy_task":
                task.timeout = 120          # max_time of this call, enforced by the worker
                task.queue = "heavy"
            return task

    app.config.task_manager = Limits()

Why a hook and not a middleware: a middleware belongs to tasks and runs in the worker too; a task
manager is a policy of the *sending* side (limits, routing, priorities by tenant...), applied in
one place to every call the app sends, whichever task it is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from qtasks_fast.schemas import META_UNIQUE

if TYPE_CHECKING:
    from qtasks_fast.task import TaskFunc


class PendingTask:
    """A call about to be sent; every attribute but ``task_func`` may be changed by ``TaskManager.mutate``.

    ``timeout`` is the call's run-time limit (QTasks ``max_time``; alias ``max_time``), not the
    producer's wait of ``add_task(timeout=...)``. ``eta`` is unix seconds (0 = now); ``countdown``
    reads and writes it relative to now. ``unique`` reads and writes ``meta``'s unique key as
    ``(key, ttl)``. ``task_func`` is the registered task, or None when the producer does not know it.
    """

    __slots__ = ("name", "args", "kwargs", "priority", "queue", "timeout", "retry", "eta", "meta", "task_func",
                 "_unique_ttl")

    def __init__(self, name: str, args: list[Any], kwargs: dict[str, Any], *, priority: int, queue: str,
                 timeout: float | None, retry: int, eta: float, meta: dict[str, Any],
                 task_func: TaskFunc | None, unique_ttl: float = 3600.0) -> None:
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.priority = priority
        self.queue = queue
        self.timeout = timeout
        self.retry = retry
        self.eta = eta
        self.meta = meta
        self.task_func = task_func
        self._unique_ttl = unique_ttl

    def __repr__(self) -> str:
        return (f"<PendingTask {self.name!r} args={self.args!r} kwargs={self.kwargs!r} priority={self.priority} "
                f"queue={self.queue!r} timeout={self.timeout} retry={self.retry} eta={self.eta}>")

    @property
    def max_time(self) -> float | None:
        return self.timeout

    @max_time.setter
    def max_time(self, value: float | None) -> None:
        self.timeout = value

    @property
    def countdown(self) -> float:
        """Seconds until the task may run (0 when it may run now)."""
        return max(0.0, self.eta - time.time()) if self.eta else 0.0

    @countdown.setter
    def countdown(self, seconds: float) -> None:
        self.eta = time.time() + seconds if seconds > 0 else 0.0

    @property
    def unique(self) -> tuple[str, float] | None:
        value = self.meta.get(META_UNIQUE)
        return (value[0], value[1]) if value else None

    @unique.setter
    def unique(self, value: str | tuple[str, float] | None) -> None:
        if value is None:
            self.meta.pop(META_UNIQUE, None)
        elif isinstance(value, str):
            self.meta[META_UNIQUE] = [value, self._unique_ttl]
        else:
            self.meta[META_UNIQUE] = [value[0], float(value[1])]


class TaskManager:
    """Base class: override :meth:`mutate`; set an instance as ``app.config.task_manager``.

    Runs on the producer only, inside ``app.build``: for ``add_task``, ``add_tasks``, the first
    step of a ``chain``, every member of a ``group``, ``app.restart`` and the ticks of periodic
    tasks (in the process that sends them). The worker does not call it again for a task it runs:
    what the manager decided travels in the envelope (``timeout``, ``priority``, ``queue``,
    ``retry``, ``eta``, ``meta``, arguments). Envelopes a worker derives from a running task (later
    chain steps, retries) are not seen by it; new calls a task sends through the app (``feed``)
    are, with the manager of the app the worker loaded. When ``config.task_manager`` is None
    nothing is built for it: it costs nothing.

    ``mutate`` runs before argument validation, so changed arguments are validated like the caller's.
    A call routed to a queue no registered task names is added to ``app.queues`` of this producer
    (so ``get``/``wait`` find it) and recorded in the broker before the first call goes there (so
    ``app.flush_all()`` in any process flushes it); workers must serve that queue too (``qtasks-fast run -Q ...``).
    """

    def mutate(self, task: PendingTask) -> PendingTask:
        """Change ``task`` in place (or build another) and return it; raise to refuse the call."""
        return task


__all__ = ["PendingTask", "TaskManager"]
