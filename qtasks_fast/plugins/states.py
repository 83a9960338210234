"""QTasks' ``SyncStatePlugin``/``AsyncStatePlugin``: where the values of ``State`` parameters live.

    class Counters(AsyncState): ...

    state = AsyncStatePlugin()
    app.add_plugin(state, trigger_names=["task_executor_args_replace"])   # as in QTasks

    @app.task
    async def hit(counters: Counters) -> int: ...

As in QTasks, the values belong to the plugin: each worker process the plugin is attached to fills ``State``
parameters from the plugin's store (without the plugin, each worker process has a store of its own, as the
state plugin QTasks' worker adds by default). So workers of one process share them (several apps, a test's
worker threads) and code outside the tasks reads them with :meth:`StatePlugin.state`. Values never leave the
process: a state is not a shared database (use ``qtasks_fast.configs`` for that).
"""

from __future__ import annotations

from typing import Any, TypeVar

from qtasks_fast.depends import AsyncState, State, SyncState, _Registry
from qtasks_fast.plugins.runtime import RuntimePlugin

__all__ = ["AsyncState", "AsyncStatePlugin", "StatePlugin", "SyncState", "SyncStatePlugin"]

S = TypeVar("S", bound=State)


class StatePlugin(RuntimePlugin):
    """Holds the values of every ``State`` class for the workers it is attached to (QTasks' state plugin)."""

    served_triggers = frozenset({"task_executor_args_replace"})

    def __init__(self, accept_annotated: bool = True, name: str | None = None) -> None:
        if not accept_annotated:
            raise ValueError("StatePlugin(accept_annotated=False): Annotated[State, ...] parameters are always "
                             "filled here; annotate the parameter with another type to opt out")
        super().__init__(name=name)
        self.accept_annotated = accept_annotated
        self.registry = _Registry()

    def state(self, state_cls: type[S]) -> S:
        """The plugin's ``state_cls`` store, as a task gets it (read it outside the tasks, e.g. in a test)."""
        return state_cls(self.registry, state_cls)

    def attach(self, worker: Any) -> None:
        worker.executor.resolver.registry = self.registry


class SyncStatePlugin(StatePlugin):
    """QTasks' name for a sync app: the same plugin (it fills ``SyncState`` and ``AsyncState`` parameters)."""


class AsyncStatePlugin(StatePlugin):
    """QTasks' name for an async app: the same plugin."""
