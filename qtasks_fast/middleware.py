"""Middlewares: code that runs around every call of the tasks that use them.

    class Timing(Middleware):
        options = frozenset({"slow_ms"})          # accepted as @app.task(slow_ms=...)

        def before_execute(self, ctx):
            ctx.data["t0"] = time.monotonic()

        def after_execute(self, ctx, status, result):
            ms = (time.monotonic() - ctx.data["t0"]) * 1000
            if ms > ctx.task.options.get("slow_ms", 1000):
                ctx.logger.warning("slow: %.0f ms", ms)

    app.add_middleware(Timing)                    # every task of the app
    @app.task(middlewares_before=[Timing], slow_ms=50)   # or one task

Hooks come in pairs. The ``before_*`` hooks run in chain order, the ``after_*``
hooks (``after_enqueue``, ``after_execute``, ``on_error``, ``on_retry``) in
reverse, so a middleware wraps everything that comes after it. ``on_result``
(a successful call's value, returned as stored: the same or a replacement; what
QTasks' ``middlewares_after`` do) runs in chain order, before ``after_execute``,
and an exception there fails the task. The chain of a
task is ``app.middlewares_before + task.middlewares_before + task.middlewares_after
+ app.middlewares_after``.

Producer hooks (``before_enqueue``/``after_enqueue``) are sync and run where the
task is enqueued. Worker hooks may be sync or async and run in the worker, on its
event loop (a sync hook must be quick). An exception in ``before_execute`` fails
the task with it (raise ``TaskCancel`` to cancel it instead); an exception in an
``after_*`` hook is logged and changes nothing.

Cost: a task whose chain overrides no worker hook runs on the worker's plain
path, exactly as without middlewares. Only the hooks a middleware overrides are
called.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.task import TaskFunc
    from qtasks_fast.worker.context import ExecContext

log = get_logger("worker")

#: hooks of the worker side, in the attribute names of :class:`Middleware`
WORKER_HOOKS = ("before_execute", "on_result", "recover", "after_execute", "on_error", "on_retry")
ENQUEUE_HOOKS = ("before_enqueue", "after_enqueue")


class Middleware:
    """Base class: override the hooks you need; the others cost nothing."""

    #: per-task options this middleware accepts in ``@app.task(...)``; a task given an option that no
    #: middleware of its chain (nor the task itself) accepts fails at registration
    options: ClassVar[frozenset[str]] = frozenset()

    # ------------------------------------------------------------------ producer
    def before_enqueue(self, app: Any, envelope: Envelope) -> Envelope:
        """Return the envelope to send (the same one, changed, or a replacement)."""
        return envelope

    def after_enqueue(self, app: Any, envelope: Envelope) -> None:
        """The envelope was accepted by the broker."""

    # -------------------------------------------------------------------- worker
    def before_execute(self, ctx: ExecContext) -> None | Awaitable[None]:
        """Before the call; ``ctx.args``/``ctx.kwargs`` are the wire arguments and may be replaced."""
        return None

    def on_result(self, ctx: ExecContext, result: Any) -> Any:
        """The call succeeded with ``result``: return the value to store (``result`` or a replacement; may be
        a coroutine). Runs before ``after_execute``; an exception fails the task."""
        return result

    def recover(self, ctx: ExecContext, exc: Exception) -> Any:
        """The call raised ``exc``: return a value (may be a coroutine) to end the task with success and that
        result instead, or raise (the default raises ``exc``; the next middleware's ``recover`` then sees what
        was raised). Runs in chain order before ``on_result``; QTasks' ``task_executor_run_task_trigger_error``
        plugins are one such middleware."""
        raise exc

    def after_execute(self, ctx: ExecContext, status: str, result: Any) -> None | Awaitable[None]:
        """After the call: ``status`` is success (``result`` the value), error (the exception) or cancel
        (the reason)."""
        return None

    def on_error(self, ctx: ExecContext, exc: BaseException) -> None | Awaitable[None]:
        """The call raised ``exc`` (before ``after_execute`` with status ``error``)."""
        return None

    def on_retry(self, ctx: ExecContext, child: Envelope) -> None | Awaitable[None]:
        """The failed call is retried as ``child`` (``child.eta``: when it may start)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


def overrides(m: Middleware, hook: str) -> bool:
    """True when ``m``'s class defines ``hook`` itself (a base-class no-op is skipped)."""
    return getattr(type(m), hook) is not getattr(Middleware, hook)


def as_instance(m: Any, where: str, phase: str = "before") -> Middleware:
    """``m`` as a middleware instance: a Middleware subclass is instantiated without arguments; a QTasks
    ``TaskMiddleware`` subclass (:mod:`qtasks_fast.middlewares.task`) is adapted to run at ``phase``
    (``"before"`` the call, or ``"after"`` it on its result), as the task list it was given in says."""
    adapt = getattr(m, "adapt_qtasks", None)
    if isinstance(m, type) and adapt is not None:
        return adapt(phase)  # type: ignore[no-any-return]
    if isinstance(m, type):
        if not issubclass(m, Middleware):
            raise TypeError(f"{where}: {m.__name__} is not a qtasks_fast.middleware.Middleware subclass")
        return m()
    if not isinstance(m, Middleware):
        raise TypeError(f"{where}: {m!r} is not a Middleware (subclass qtasks_fast.middleware.Middleware)")
    return m


def as_instances(ms: Iterable[Any] | None, where: str, phase: str = "before") -> list[Middleware]:
    return [as_instance(m, where, phase) for m in ms or ()]


def middleware_chain(app: Any, task_func: TaskFunc) -> tuple[Middleware, ...]:
    """``app.middlewares_before + task.middlewares_before + task.middlewares_after + app.middlewares_after``."""
    where = f"app {getattr(app, 'name', '?')!r}"
    return (*as_instances(getattr(app, "middlewares_before", None), where),
            *task_func.middlewares_before, *task_func.middlewares_after,
            *as_instances(getattr(app, "middlewares_after", None), where))


def unclaimed_options(given: Iterable[str], chain: Sequence[Middleware]) -> list[str]:
    """The options of ``given`` that no middleware of ``chain`` declares in its ``options``, sorted."""
    accepted: set[str] = set()
    for m in chain:
        accepted |= m.options
    return sorted(set(given) - accepted)


# ------------------------------------------------------------------------------------ worker side
class Hooks:
    """The worker hooks of one task, prepared once: only overridden hooks, ``after_*`` already reversed."""

    __slots__ = ("before", "results", "recover", "after", "on_error", "on_retry", "events")

    def __init__(self, chain: Sequence[Middleware], events: Any) -> None:
        self.before = tuple(m.before_execute for m in chain if overrides(m, "before_execute"))
        self.results = tuple(m.on_result for m in chain if overrides(m, "on_result"))
        self.recover = tuple(m.recover for m in chain if overrides(m, "recover"))
        rev = tuple(reversed(chain))
        self.after = tuple(m.after_execute for m in rev if overrides(m, "after_execute"))
        self.on_error = tuple(m.on_error for m in rev if overrides(m, "on_error"))
        self.on_retry = tuple(m.on_retry for m in rev if overrides(m, "on_retry"))
        #: the app's Events when a task event has a handler, else None
        self.events = events

    @property
    def empty(self) -> bool:
        return not (self.before or self.results or self.recover or self.after or self.on_error or self.on_retry
                    or self.events)


async def call_hooks(hooks: Sequence[Callable[..., Any]], *args: Any, label: str = "", strict: bool = False) -> None:
    """Call each hook (awaiting async ones). ``strict``: an exception propagates (``before_execute``);
    otherwise it is logged and the next hook still runs."""
    for hook in hooks:
        try:
            res = hook(*args)
            if inspect.isawaitable(res):
                await res
        except Exception:
            if strict:
                raise
            log.exception("middleware hook %s of task %s failed", getattr(hook, "__qualname__", hook), label)


async def recovered(hooks: Sequence[Callable[..., Any]], ctx: ExecContext, exc: Exception) -> Any:
    """The result of the first ``recover`` hook that returns one for ``exc`` (each hook sees what the one
    before it raised); raises the last exception when none does."""
    for hook in hooks:
        try:
            value = hook(ctx, exc)
            return await value if inspect.isawaitable(value) else value
        except Exception as err:  # noqa: BLE001 - handed to the next hook, raised when none recovers
            exc = err
    raise exc


async def through_results(hooks: Sequence[Callable[..., Any]], ctx: ExecContext, result: Any) -> Any:
    """``result`` passed through each ``on_result`` hook in chain order (awaiting async ones); raises what a
    hook raises (the task fails with it)."""
    for hook in hooks:
        result = hook(ctx, result)
        if inspect.isawaitable(result):
            result = await result
    return result
