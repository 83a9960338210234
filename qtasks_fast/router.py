"""Tasks declared without an app: ``Router`` (included by apps) and ``shared_task`` (joins every app).

    router = Router()                      # in emails.py: no app import, no import cycle

    @router.task(max_time=30)
    def send(to: str) -> None: ...

    app.include_router(router)             # in app.py: send is now a task of app

    @shared_task(priority=0)               # anywhere: a task of every app, created before or after
    def ping() -> str: ...

As in QTasks, ``shared_task`` tasks are registered in every ``QueueTasks`` of the process, and a
call like ``ping.add_task()`` goes to the main app: the one created last (QTasks ``_state.app_main``).
An app's own task of the same name wins over a shared one. A router task's calls go to the app
that included its router last. Each app gets its own :class:`~qtasks_fast.task.TaskFunc`, so a
task's queue default and middlewares are those of the app that runs it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.task import TaskFunc

#: every app of the process (weakly), for shared tasks declared after an app was created
_apps: weakref.WeakSet[BaseQueueTasks] = weakref.WeakSet()
_main: weakref.ref[BaseQueueTasks] | None = None
#: shared tasks by name; a redefinition (a module imported twice) replaces the earlier one
_shared: dict[str, SharedTask] = {}


def app_created(app: BaseQueueTasks) -> None:
    """Called by every new app: it becomes the main app, and gets every shared task."""
    global _main
    _apps.add(app)
    _main = weakref.ref(app)
    for task in list(_shared.values()):
        task.bind(app)


def main_app() -> BaseQueueTasks | None:
    """The app created last in this process (QTasks ``_state.app_main``), or None."""
    return _main() if _main is not None else None


class RouterTask:
    """What ``@router.task`` returns: the function, plus the task API of the app it is bound to.

    ``add_task``, ``s`` and every ``TaskFunc`` attribute work once an app includes the router;
    calling it runs the plain function here.
    """

    def __init__(self, func: Callable[..., Any], name: str, options: dict[str, Any]) -> None:
        self.func = func
        self.name = name
        self.options = options
        self._app: weakref.ref[BaseQueueTasks] | None = None
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def bind(self, app: BaseQueueTasks) -> TaskFunc:
        """Register in ``app`` (its own ``TaskFunc``) and send calls there from now on."""
        tf = app._register(self.func, self.name, dict(self.options), shared=isinstance(self, SharedTask))
        if tf.func is self.func:  # else the app kept a task of its own by this name
            self._app = weakref.ref(app)
        return tf

    def _target(self) -> BaseQueueTasks | None:
        return self._app() if self._app is not None else None

    @property
    def task_func(self) -> TaskFunc:
        """The ``TaskFunc`` of the app calls go to; a clear error when there is none yet."""
        app = self._target()
        tf = app.tasks.get(self.name) if app is not None else None
        if tf is None or tf.func is not self.func:
            raise RuntimeError(self._unbound_message())
        return tf

    def _unbound_message(self) -> str:
        return (f"task {self.name!r} of a Router is not in any app yet: call app.include_router(router) "
                "before sending it")

    def add_task(self, *args: Any, **kwargs: Any) -> Any:
        """Enqueue through the bound app (same options as ``TaskFunc.add_task``)."""
        return self.task_func.add_task(*args, **kwargs)

    def s(self, *args: Any, **kwargs: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """A signature ``(name, args, kwargs)``; needs no app."""
        return (self.name, args, kwargs)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # private and dunder names are never the task's (copy, pickle, half-built)
            raise AttributeError(attr)
        return getattr(self.task_func, attr)


class SharedTask(RouterTask):
    """What ``@shared_task`` returns: a task of every app; calls go to the main app."""

    def _target(self) -> BaseQueueTasks | None:
        app = main_app()
        if app is not None and app.tasks.get(self.name) is not None and app.tasks[self.name].func is self.func:
            return app
        return super()._target()  # the main app has a task of its own by that name: the last app bound

    def _unbound_message(self) -> str:
        return f"shared task {self.name!r} has no app: create a QueueTasks first (it joins every app)"


def shared_tasks() -> dict[str, SharedTask]:
    """Every shared task of the process by name (a copy): what QTasks' ``TaskRegistry.all_tasks()`` lists."""
    return dict(_shared)


def _decorate(name: Any, make: Callable[[Callable[..., Any], str | None], Any]) -> Any:
    """The four decorator forms of ``app.task``: bare, ``()``, ``("name")``, ``(name=..., ...)``."""
    if callable(name):
        return make(name, None)
    return lambda func: make(func, name)


class Router:
    """Tasks declared apart from the app (QTasks ``Router``); ``app.include_router(router)`` registers them.

    ``Router(**task_options)`` gives every task of the router default options (e.g. ``queue="emails"``),
    which each ``@router.task(...)`` may override.
    """

    def __init__(self, **task_options: Any) -> None:
        self.task_options = task_options
        self.tasks: dict[str, RouterTask] = {}
        self._apps: weakref.WeakSet[BaseQueueTasks] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<Router tasks={sorted(self.tasks)}>"

    def task(self, name: Any = None, **options: Any) -> Any:
        """Declare a task: ``@router.task``, ``@router.task()``, ``@router.task("name")``, ``@router.task(name=..)``."""
        def make(func: Callable[..., Any], given: str | None) -> RouterTask:
            opts = {**self.task_options, **options}
            task_name = opts.pop("name", None) or given or func.__name__
            if task_name in self.tasks:
                raise ValueError(f"task name {task_name!r} is already declared in this router "
                                 f"(by {self.tasks[task_name].func!r}); pick another name=")
            rt = RouterTask(func, task_name, opts)
            self.tasks[task_name] = rt
            for app in list(self._apps):  # already included: the app gets it now
                rt.bind(app)
            return rt

        return _decorate(name, make)

    def attach(self, app: BaseQueueTasks) -> None:
        """Register this router's tasks in ``app`` (``app.include_router`` calls it; twice is a no-op)."""
        if app in self._apps:
            return
        for rt in self.tasks.values():
            rt.bind(app)
        self._apps.add(app)
        app.routers.append(self)


def shared_task(name: Any = None, **options: Any) -> Any:
    """Declare a task of every app (QTasks ``shared_task``): ``@shared_task``, ``@shared_task(priority=0)``..."""
    def make(func: Callable[..., Any], given: str | None) -> SharedTask:
        opts = dict(options)
        task_name = opts.pop("name", None) or given or func.__name__
        st = SharedTask(func, task_name, opts)
        _shared[task_name] = st
        for app in list(_apps):
            st.bind(app)
        return st

    return _decorate(name, make)


__all__ = ["Router", "RouterTask", "SharedTask", "main_app", "shared_task", "shared_tasks"]
