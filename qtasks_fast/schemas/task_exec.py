"""QTasks' ``TaskExecSchema`` (``qtasks.schemas.task_exec``): a registered task as ``app.tasks`` holds it.

Here that is :class:`qtasks_fast.task.TaskFunc` (what ``@app.task`` returns), so ``TaskExecSchema`` names that
class: ``isinstance(app.tasks[name], TaskExecSchema)`` holds and QTasks' fields read the same (``name``,
``priority``, ``func``, ``awaiting``, ``generating``, ``echo``, ``max_time``, ``retry``, ``retry_on_exc``,
``decode``, ``tags``, ``description``, ``generate_handler``, ``middlewares_before/after``, ``extra``);
``executor`` is our executor's name (``thread``, ``inline``, ``process``, ``custom``). Tasks are built by
``@app.task``, not by hand. It is loaded on first use: the task module imports the schemas.

QTasks' ``TaskPrioritySchema`` is the item of its worker's in-process priority queue; the broker orders tasks
here, so it has no counterpart (docs/from-qtasks.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtasks_fast._lazy import lazy_names

if TYPE_CHECKING:
    from qtasks_fast.task import TaskExecSchema as TaskExecSchema

__getattr__ = lazy_names(__name__, {"TaskExecSchema": "qtasks_fast.task"})

__all__ = ["TaskExecSchema"]
