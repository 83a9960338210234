"""QTasks' ``qtasks.registries.task_registry.TaskRegistry``: the process-wide list of shared tasks.

    @TaskRegistry.register(name="ping", retry=2)     # what QTasks' shared_task does underneath
    def ping() -> str: ...

    TaskRegistry.get_task("ping")                    # the shared task, or None
    TaskRegistry.all_tasks()                         # {name: shared task}

Why a view and not a second registry: shared tasks are kept by :mod:`qtasks_fast.router` (``shared_task``),
which registers each one in every app of the process, created before or after. ``register`` is
``shared_task`` under QTasks' signature, so a task registered either way is the same task, listed by both.
QTasks hands back ``TaskExecSchema`` records; here the :class:`~qtasks_fast.router.SharedTask` itself: its
``name``, ``func`` and ``options`` always, and the other fields of a registered task (``priority``, ``retry``,
``echo``, ...) read through to the main app's task once an app exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtasks_fast.router import SharedTask, shared_task, shared_tasks


class TaskRegistry:
    """QTasks' class-level registry, over :func:`qtasks_fast.shared_task`'s (module docstring)."""

    @classmethod
    def register(cls, name: str | None = None, priority: int | None = None, awaiting: bool = False,
                 echo: bool = False, retry: int | None = None,
                 retry_on_exc: Sequence[type[BaseException]] | None = None, decode: Callable[[Any], Any] | None = None,
                 tags: Sequence[str] | None = None, description: str | None = None,
                 generate_handler: Callable[[Any], Any] | None = None, executor: Any = None,
                 middlewares_before: Sequence[Any] | None = None, middlewares_after: Sequence[Any] | None = None,
                 **kwargs: Any) -> Callable[[Callable[..., Any]], SharedTask]:
        """A decorator that makes ``func`` a shared task, with QTasks' options (``**kwargs``: its ``extra``).

        ``priority=None`` follows each app's ``config.task_default_priority``. ``awaiting`` chose QTasks'
        ``AsyncTask`` wrapper; here ``add_task`` of a shared task follows the main app (a coroutine for
        ``qtasks_fast.asyncio.QueueTasks``), so it has nothing left to choose and is accepted as such.
        """
        del awaiting
        given = {"priority": priority, "retry": retry, "retry_on_exc": retry_on_exc, "decode": decode, "tags": tags,
                 "description": description, "generate_handler": generate_handler, "executor": executor,
                 "middlewares_before": middlewares_before, "middlewares_after": middlewares_after}
        options = {k: v for k, v in given.items() if v is not None}
        if echo:
            options["echo"] = True

        def wrapper(func: Callable[..., Any]) -> SharedTask:
            return shared_task(name or func.__name__, **options, **kwargs)(func)  # type: ignore[no-any-return]

        return wrapper

    @classmethod
    def get_task(cls, name: str) -> SharedTask | None:
        """The shared task named ``name``, or None."""
        return shared_tasks().get(name)

    @classmethod
    def all_tasks(cls) -> dict[str, SharedTask]:
        """Every shared task of the process by name (a copy: register through :meth:`register`)."""
        return shared_tasks()


__all__ = ["TaskRegistry"]
