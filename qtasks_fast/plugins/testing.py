"""QTasks' ``SyncTestPlugin``/``AsyncTestPlugin``: the records of ``@app.task(test=...)`` tasks say so.

    app.add_plugin(SyncTestPlugin())         # or trigger_names=["worker_execute_before", ...] as in QTasks

    @app.task(test=True)
    def charge(order: int) -> str: ...

    task = charge.add_task(1, timeout=5)
    task.is_testing, task.extra              # True, {"is_testing": True}

In QTasks the plugin adds ``is_testing`` (the task's ``test`` option) to the record the worker stores when the
task starts and ends. Here it is added where the call is sent: the producer puts it in the envelope's meta
(:data:`~qtasks_fast.schemas.META_EXTRA`), and every storage keeps the envelope with the record, so every
record of the call (the one ``add_task`` returns, the running one, the final one, a retry's) has it, whatever
the backend, and a worker costs nothing more. A task without a truthy ``test`` option gets no field, as in
QTasks; so does a call sent by a producer that does not have the plugin or the task (by name only).
"""

from __future__ import annotations

from typing import Any

from qtasks_fast.plugins.base import BasePlugin
from qtasks_fast.schemas.envelope import Envelope, with_record_extra

__all__ = ["AsyncTestPlugin", "SyncTestPlugin", "TestPlugin"]


class TestPlugin(BasePlugin):
    """Adds ``is_testing`` to the records of the tasks registered with a truthy ``test`` option."""

    __test__ = False  # a library class, not a pytest test class
    #: QTasks' trigger names for it, accepted by ``add_plugin`` and registered at :attr:`served_at`
    served_triggers = frozenset({"worker_execute_before", "worker_remove_finished_task"})
    served_at = "task_before_enqueue"

    def trigger(self, name: str, **kwargs: Any) -> dict[str, Any] | None:
        """At ``task_before_enqueue``: the envelope with ``is_testing`` for a task whose ``test`` option is set."""
        app, env = kwargs.get("app"), kwargs.get("envelope")
        if not isinstance(env, Envelope) or app is None:
            return None
        task = app.tasks.get(env.task_name)
        test = task.extra.get("test") if task is not None else None
        if not test:
            return None
        return {"envelope": with_record_extra(env, is_testing=test)}


class SyncTestPlugin(TestPlugin):
    """QTasks' name for a sync app: the same plugin."""


class AsyncTestPlugin(TestPlugin):
    """QTasks' name for an async app: the same plugin (its trigger runs where the call is sent)."""
