"""App events (QTasks ``app.events``): ``@app.events.on.task_success`` and friends.

    @app.events.on.task_error
    async def alert(task_name: str, uuid: str, traceback: str) -> None: ...

A handler is sync or async and takes keyword arguments; it is given only the
ones its signature names (or all of them with ``**kwargs``), so it can ask for
just what it needs. Events of a task fire in the worker process that runs it,
before its result is stored; an exception in a handler is logged and never
changes the task's outcome.

What each event passes (besides ``event``, its own name):

- ``task_running``: ``task`` (the TaskFunc), ``task_name``, ``uuid``, ``envelope``, ``worker_id``
- ``task_success``: the same plus ``result``
- ``task_error``: the same plus ``exc`` and ``traceback`` (text); fires once per task, on its final
  failure only (an attempt that will be retried fires ``task_retry`` instead), so it can page someone
- ``task_cancel``: the same plus ``reason``
- ``task_retry``: the same plus ``exc`` and ``child`` (the retry's Envelope, ``child.eta`` its start):
  an attempt failed and is retried; its retry fires ``task_error`` if it is the last and fails too
- ``task_stopping``: the same plus ``model``, the task's final record (a ``Task``), after the
  event of its outcome (QTasks' event of a task that ended, however it ended)
- ``starting`` / ``stopping``: ``worker`` and ``broker`` (a worker process starts serving / begins its drain)
- ``worker_running`` / ``worker_stopping``: ``worker``, ``broker`` and ``number`` (0: one loop per process),
  when the worker process serves / has drained

Every task event also passes QTasks' names for its arguments: ``task_func`` (the TaskFunc, as
``task``), ``task_broker`` (the Envelope: ``uuid``, ``task_name``, ``args``, ``kwargs``, ``priority``)
and ``worker`` (the ``qtasks_fast.worker.worker.Worker`` running it); ``starting``/``stopping`` pass
QTasks' ``starter`` too, which is that Worker (it starts the process's serving). So a handler written
for QTasks (``async def h(worker, task_func, task_broker)``, ``def h(starter, worker, broker)``) runs
unchanged, reading our objects under QTasks' names.

:class:`SyncEvents` and :class:`AsyncEvents` are QTasks' names (``QueueTasks(events=SyncEvents())``):
the same handlers; ``AsyncEvents.fire`` is always a coroutine.

Nothing is paid for an event without handlers: a task whose events have no
handler runs on the worker's plain path (see :meth:`Events.active`).
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from qtasks_fast.log import get_logger

log = get_logger("events")

F = TypeVar("F", bound=Callable[..., Any])

#: every event an app fires
EVENTS = ("task_running", "task_success", "task_error", "task_cancel", "task_retry", "task_stopping", "starting",
          "stopping", "worker_running", "worker_stopping")
#: the events fired per task (a handler for one of them puts tasks on the worker's hooked path)
TASK_EVENTS = frozenset(e for e in EVENTS if e.startswith("task_"))


class _Handler:
    """One registered handler and the keyword arguments it accepts (None = all)."""

    __slots__ = ("func", "accepts", "is_async")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.is_async = inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None))  # noqa: B004 - a callable object with an async __call__
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # a builtin without a signature: give it everything
            params = [inspect.Parameter("kw", inspect.Parameter.VAR_KEYWORD)]
        if any(p.kind is p.VAR_KEYWORD for p in params):
            self.accepts: frozenset[str] | None = None
        else:
            self.accepts = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))

    def call(self, kw: dict[str, Any], args: tuple[Any, ...] = ()) -> Any:
        if self.accepts is not None:
            kw = {k: v for k, v in kw.items() if k in self.accepts}
        return self.func(*args, **kw)


class _Event:
    """``app.events.on.<name>``: a decorator usable bare or called: ``@on.x`` and ``@on.x()``."""

    def __init__(self, events: Events, name: str) -> None:
        self._events = events
        self.name = name

    @overload
    def __call__(self, func: F) -> F: ...

    @overload
    def __call__(self, func: None = None) -> Callable[[F], F]: ...

    def __call__(self, func: Any = None) -> Any:
        if func is None:
            return self._register
        return self._register(func)

    def _register(self, func: F) -> F:
        if not callable(func):
            raise TypeError(f"@events.on.{self.name}: {func!r} is not callable")
        self._events._add(self.name, func)
        return func


class _On:
    """The ``on`` namespace: one attribute per event; an unknown name is an AttributeError listing the known ones."""

    def __init__(self, events: Events) -> None:
        self._events = events

    def __getattr__(self, name: str) -> _Event:
        if name in EVENTS:
            return _Event(self._events, name)
        raise AttributeError(f"no event {name!r}; events are: {', '.join(EVENTS)}")


class Events:
    """Handlers per event name; ``on`` registers, :meth:`fire` calls."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[_Handler]] = {}
        self.on = _On(self)
        #: tasks that decided, from this object, that they need no event hooks; told when that changes
        self._watchers: weakref.WeakSet[Any] = weakref.WeakSet()

    def _add(self, name: str, func: Callable[..., Any]) -> None:
        self.handlers.setdefault(name, []).append(_Handler(func))
        if name in TASK_EVENTS:
            for tf in list(self._watchers):
                tf.invalidate()

    def active(self, name: str) -> bool:
        """True when ``name`` has a handler."""
        return name in self.handlers

    def has_task_handlers(self) -> bool:
        return any(name in self.handlers for name in TASK_EVENTS)

    def watch(self, task: Any) -> None:
        """Call ``task.invalidate()`` when a task event gets its first handler (the task caches its plan)."""
        self._watchers.add(task)

    def fire(self, event: str, *args: Any, **kw: Any) -> Awaitable[None] | None:
        """Call ``event``'s handlers with ``kw`` (and ``args``, positionally, as QTasks' ``fire`` allows), in
        registration order; a failing one is logged and skipped.

        When every handler is sync they run at once and this returns None; when one is async this
        returns an awaitable that runs them all, in order (await it: the worker does).
        """
        handlers = self.handlers.get(event)
        if not handlers:
            return None
        kw["event"] = event
        env = kw.get("envelope")
        if env is None and hasattr(kw.get("task"), "uuid"):  # a caller that passed the envelope as ``task``
            env = kw["envelope"] = kw["task"]
        if env is not None:
            kw.setdefault("task_name", env.task_name)
            kw.setdefault("uuid", env.uuid)
        if not any(h.is_async for h in handlers):
            for h in handlers:
                _call_sync(h, event, kw, args)
            return None
        return self._fire_async(handlers, event, kw, args)

    async def afire(self, event: str, *args: Any, **kw: Any) -> None:
        """:meth:`fire`, always awaitable (for async callers)."""
        res = self.fire(event, *args, **kw)
        if res is not None:
            await res

    def fire_sync(self, event: str, *args: Any, **kw: Any) -> None:
        """:meth:`fire` from code without a running loop: async handlers run on a private loop."""
        res = self.fire(event, *args, **kw)
        if res is not None:
            asyncio.run(_as_coro(res))

    @staticmethod
    async def _fire_async(handlers: list[_Handler], event: str, kw: dict[str, Any],
                          args: tuple[Any, ...] = ()) -> None:
        for h in handlers:
            try:
                res = h.call(kw, args)
                if inspect.isawaitable(res):
                    await res
            except Exception:  # noqa: BLE001 - a handler must not break the task or the worker
                log.exception("handler %s of event %r failed", _name(h.func), event)


def _call_sync(h: _Handler, event: str, kw: dict[str, Any], args: tuple[Any, ...] = ()) -> None:
    try:
        h.call(kw, args)
    except Exception:  # noqa: BLE001
        log.exception("handler %s of event %r failed", _name(h.func), event)


async def _as_coro(aw: Awaitable[None]) -> None:
    await aw


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


class SyncEvents(Events):
    """QTasks' ``SyncEvents``: ``QueueTasks(events=SyncEvents())``; :meth:`fire` calls sync handlers at once."""


class AsyncEvents(Events):
    """QTasks' ``AsyncEvents``: as :class:`Events`, but ``await events.fire(...)`` works whatever the handlers are."""

    async def fire(self, event: str, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        """Call ``event``'s handlers (see :meth:`Events.fire`) and wait for the async ones."""
        res = super().fire(event, *args, **kw)
        if res is not None:
            await res


def events_of(app: Any) -> Events | None:
    """The app's :class:`Events`, or None while the app has none (an app built before events existed)."""
    ev = getattr(app, "events", None)
    return ev if isinstance(ev, Events) else None

#: QTasks imports classes from modules below this one (qtasks_fast.qtasks_paths): a package for the import system
__path__: list[str] = []
