"""Extra ``@app.task(...)`` options as in QTasks (issue 11): kept in ``task.extra`` for plugins, which read them
at their trigger as ``kwargs["task_func"].extra``; a misspelt option of ours is still visible, as a warning.

What a user relies on: a QTasks app passing an option of its own plugin (``@app.task(audit="payments")``)
registers with only the import changed, and the plugin gets the value in the worker; ``@app.task(retyr=3)``
does not fail but says, once at registration, that ``retyr`` is kept for plugins and that ``retry`` may have been
meant; our own options and the options a middleware declares give no warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.middleware import Middleware
from qtasks_fast.plugins import BasePlugin
from qtasks_fast.testing import WorkerThread

KEPT = "is not @app.task's nor declared by a middleware of its chain: kept in task.extra for plugins"


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """The WARNING lines logged about tasks during the test."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("qtasks_fast.task")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


class AuditPlugin(BasePlugin):
    """Written as QTasks' plugins are: reads its option from the task at the worker's trigger."""

    def __init__(self) -> None:
        super().__init__(name="AuditPlugin")
        self.seen: list[tuple[str, Any]] = []

    async def trigger(self, name: str, **kwargs: Any) -> None:
        task_func = kwargs.get("task_func")
        if task_func is not None and "audit" in task_func.extra:
            self.seen.append((name, task_func.extra["audit"]))


def test_a_qtasks_plugin_reads_the_tasks_extra_option_at_its_trigger(app_name: str, warnings: list[str]) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    plugin = AuditPlugin()
    app.add_plugin(plugin, trigger_names=["worker_execute_before"], component="worker")

    @app.task(audit="payments")
    def pay(amount: int) -> int:
        return amount

    @app.task
    def plain() -> None: ...

    assert pay.extra == {"audit": "payments"}
    assert warnings == [f"task 'pay': option 'audit' {KEPT}"]
    with WorkerThread(app):
        done = pay.add_task(7, timeout=20)
        other = plain.add_task(timeout=20)
    assert done is not None and done.status == "success" and done.returning == 7, done
    assert other is not None and other.status == "success", other
    assert plugin.seen == [("worker_execute_before", "payments")]


class Budget(Middleware):
    options = frozenset({"budget_ms"})


def test_a_typo_warns_once_with_the_closest_option_and_ours_are_unaffected(app_name: str,
                                                                          warnings: list[str]) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task(retyr=3)
    def flaky() -> None: ...

    assert warnings == [f"task 'flaky': option 'retyr' {KEPT}; did you mean 'retry'?"]
    assert flaky.retry is None and flaky.extra == {"retyr": 3}
    warnings.clear()

    @app.task(name="ours", retry=2, priority=1, max_time=5, tags=["a"], test=True)
    def own() -> None: ...

    @app.task(middlewares_before=[Budget], budget_ms=50)
    def measured() -> None: ...

    assert warnings == []
    assert (own.retry, own.priority, own.max_time, own.tags, own.extra) == (2, 1, 5, ["a"], {"test": True})
    assert measured.options == {"budget_ms": 50}
