"""QTasks' task middlewares (``qtasks.middlewares.TaskMiddleware``) on qtasks_fast's middleware chain.

    class Audit(TaskMiddleware):                   # written for QTasks: runs unchanged
        def __init__(self, task_executor):
            super().__init__(task_executor)

        async def __call__(self):                  # or a plain def
            ex = self.task_executor
            ex._kwargs["tenant"] = "acme"          # before the call: its arguments
            return ex

    @app.task(middlewares_before=[Audit], middlewares_after=[Rounding])

QTasks' contract: the class is built for every call with the call's executor and then called; the
executor exposes ``task_func`` (here the ``TaskFunc``), ``task_broker`` (the call: ``uuid``,
``task_name``, ``args``, ``kwargs``, ``priority``), ``_args``/``_kwargs`` (the arguments, before echo
and validation) and, after the call, ``_result``, plus ``log``. A middleware may change those
(or return another executor-like object to take them from). One in ``middlewares_before`` runs
before the call (its ``_args``/``_kwargs`` are the call's), one in ``middlewares_after`` after a
successful call (its ``_result`` is what is stored), as in QTasks; an exception in either fails the
task. ``app.add_middleware(Cls, position="before"|"after")`` puts one in front of every task.
The adapters are ordinary :class:`qtasks_fast.middleware.Middleware` hooks (``before_execute``,
``on_result``), so a task without one keeps the worker's plain path.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from qtasks_fast.middleware import Middleware

if TYPE_CHECKING:
    from qtasks_fast.worker.context import ExecContext


class BaseMiddleware:
    """QTasks' ``qtasks.middlewares.base.BaseMiddleware``: a named middleware."""

    def __init__(self, name: str) -> None:
        self.name = name


class TaskMiddleware(BaseMiddleware):
    """QTasks' task middleware: subclass it and override ``__call__`` (sync or async)."""

    def __init__(self, task_executor: Any) -> None:
        super().__init__(name="TaskMiddleware")
        self.task_executor = task_executor

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return None

    @classmethod
    def adapt_qtasks(cls, phase: str) -> Middleware:
        """This class as a qtasks_fast middleware run ``"before"`` the call or ``"after"`` it."""
        if phase == "before":
            return _Before(cls)
        if phase == "after":
            return _After(cls)
        raise ValueError(f"{cls.__name__}: position must be 'before' or 'after', not {phase!r}")


class TaskExecutorView:
    """What a QTasks middleware sees as ``self.task_executor`` for one call."""

    def __init__(self, ctx: ExecContext, result: Any = None) -> None:
        self.task_func = ctx.task
        self.task_broker = ctx.envelope
        self._args = list(ctx.args)
        self._kwargs = dict(ctx.kwargs)
        self._result = result
        self.echo = None
        self.log = ctx.logger

    def __repr__(self) -> str:
        return f"<TaskExecutorView {self.task_broker.task_name}>"


async def _run(cls: type[TaskMiddleware], view: TaskExecutorView) -> Any:
    """Build the middleware for this call, call it, and return the executor to read back from."""
    returned = cls(view)()
    if inspect.isawaitable(returned):
        returned = await returned
    return returned if returned is not None and hasattr(returned, "_args") else view


class _Adapter(Middleware):
    def __init__(self, cls: type[TaskMiddleware]) -> None:
        self.cls = cls

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.cls.__name__}>"


class _Before(_Adapter):
    async def before_execute(self, ctx: ExecContext) -> None:
        ex = await _run(self.cls, TaskExecutorView(ctx))
        ctx.args, ctx.kwargs = list(ex._args), dict(ex._kwargs)


class _After(_Adapter):
    async def on_result(self, ctx: ExecContext, result: Any) -> Any:
        ex = await _run(self.cls, TaskExecutorView(ctx, result))
        return ex._result


__all__ = ["BaseMiddleware", "TaskExecutorView", "TaskMiddleware"]
