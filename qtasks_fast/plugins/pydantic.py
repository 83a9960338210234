"""QTasks' ``SyncPydanticWrapperPlugin``/``AsyncPydanticWrapperPlugin``: pydantic models as task arguments,
including QTasks' "spread" form, and as results.

    class Order(BaseModel):
        id: int
        items: list[str] = []

    @app.task
    def ship(order: Order) -> Order: ...

    ship.add_task(id=1, items=["a"])     # QTasks' spread form: fields as keywords
    ship.add_task(1, ["a"])              # or positionals, in field order
    ship.add_task(Order(id=1))           # or the model, or its dict

QTasks' worker adds this plugin by default; here every task gets the behaviour without it
(:mod:`qtasks_fast.contrib.pydantic`, :func:`qtasks_fast.middlewares.arguments.fold_spread`): the producer folds
the spread form into the model's dict and validates it at ``add_task`` (a wrong field fails there, naming it),
the worker builds the model (and folds a spread call sent by a producer that does not know the task), and a
model result is stored as its ``model_dump(mode="json")``. Adding the plugin the QTasks way is accepted and
changes nothing more: there is nothing to plug into a worker. Its two handlers are QTasks', on our
implementation, for code that calls them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from qtasks_fast.middlewares.arguments import fold_spread
from qtasks_fast.plugins.runtime import RuntimePlugin

__all__ = ["AsyncPydanticWrapperPlugin", "PydanticWrapperPlugin", "SyncPydanticWrapperPlugin"]


class PydanticWrapperPlugin(RuntimePlugin):
    """QTasks' pydantic wrapper: built into every task here (module doc)."""

    served_triggers = frozenset({"task_executor_args_replace", "task_executor_after_execute_result_replace"})

    def replace_args(self, task: Any, args: Sequence[Any], kw: dict[str, Any]) -> dict[str, Any] | None:
        """QTasks' handler: ``{"args": ..., "kw": ...}`` of a call of ``task`` (a ``TaskFunc``) with the spread
        form of its first model parameter folded into one dict (the model is built from it at the call); None
        when the task has no model parameter."""
        if not task.models:
            return None
        args, kw = fold_spread(task, args, kw)
        return {"args": list(args), "kw": kw}

    def replace_result(self, result: Any) -> dict[str, Any] | None:
        """QTasks' handler: ``{"result": model_dump()}`` for a model result (what the worker stores), else None."""
        pyd = sys.modules.get("pydantic")
        if pyd is not None and isinstance(result, pyd.BaseModel):
            return {"result": result.model_dump(mode="json")}
        return None

    def attach(self, worker: Any) -> None:
        """Nothing to plug in: the worker folds, builds and dumps models for every task by itself."""


class SyncPydanticWrapperPlugin(PydanticWrapperPlugin):
    """QTasks' name for a sync app: the same plugin."""


class AsyncPydanticWrapperPlugin(PydanticWrapperPlugin):
    """QTasks' name for an async app: the same plugin."""
