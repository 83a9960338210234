"""QTasks' default plugins (retry, state, pydantic wrapper, depends) under their QTasks names (issue 11).

What a user relies on: QTasks code that imports ``SyncRetryPlugin``/``AsyncStatePlugin``/... from
``qtasks.plugins`` and adds them with ``app.add_plugin(Plugin(), trigger_names=[<QTasks' names>])`` runs with
only the import changed, and gets the QTasks effect: a failed task retried (the worker's retry decision is
the plugin's), State values held by the plugin (shared by the workers it is added to), Depends filled.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.plugins import (
    AsyncDependsPlugin,
    AsyncRetryPlugin,
    AsyncState,
    AsyncStatePlugin,
    BasePlugin,
    Depends,
    SyncRetryPlugin,
    SyncStatePlugin,
)
from qtasks_fast.plugins.depends import ScopeEnum
from qtasks_fast.testing import WorkerThread


def make_app(tag: str) -> QueueTasks:
    return QueueTasks(f"qplug{tag}{time.monotonic_ns()}", broker_url="memory://")


def flaky_app(plugin: Any) -> tuple[QueueTasks, Any]:
    app = make_app("retry")
    app.add_plugin(plugin, trigger_names=["worker_task_error_retry"])  # QTasks' own registration
    calls: list[int] = []

    @app.task(retry=2)
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("first attempt fails")
        return n * 10

    return app, flaky


def test_a_failed_task_is_retried_with_the_retry_plugin_added_the_qtasks_way() -> None:
    app, flaky = flaky_app(AsyncRetryPlugin())
    with WorkerThread(app, broker_url="memory://"):
        first = flaky.add_task(4)
        done = app.wait(first.uuid, 10)
        failed = app.get(first.uuid)
    assert done is not None and done.status == "success" and done.returning == 40, done
    assert failed is not None and failed.status == "error" and failed.retry_child_uuid == done.uuid, failed


def test_the_workers_retry_decision_is_the_plugins() -> None:
    decided: list[str] = []

    class NoRetryOnValueError(SyncRetryPlugin):
        def retry_child(self, envelope: Any, task: Any, exc: BaseException) -> Any:
            decided.append(type(exc).__name__)
            return None if isinstance(exc, ValueError) else super().retry_child(envelope, task, exc)

    app, flaky = flaky_app(NoRetryOnValueError())
    with WorkerThread(app, broker_url="memory://"):
        done = app.wait(flaky.add_task(4).uuid, 10)
    assert done is not None and done.status == "error" and done.retry_child_uuid is None, done
    assert decided == ["ValueError"]


def test_added_without_trigger_names_it_plugs_in_and_costs_tasks_nothing() -> None:
    app = make_app("defaults")
    plugin = app.add_plugin(SyncRetryPlugin())  # QTasks' add_plugin(plugin): no trigger names
    assert app.plugins.get("worker_start") == [plugin]  # attached when a worker starts
    assert app.plugins.get("task_before_execute") is None  # not on any per-task trigger


def test_a_plugin_of_ones_own_is_still_refused_at_triggers_with_no_counterpart() -> None:
    app = make_app("refused")
    with pytest.raises(ValueError, match="worker_task_error_retry.*RetryPlugin"):
        app.add_plugin(BasePlugin(), trigger_names=["worker_task_error_retry"])


class Hits(AsyncState):
    """A QTasks-style state namespace."""


def test_state_lives_in_the_state_plugin_shared_by_the_workers_it_is_added_to() -> None:
    plugin = AsyncStatePlugin()
    apps = [make_app("state_a"), make_app("state_b")]
    hits = []
    for app in apps:
        app.add_plugin(plugin, trigger_names=["task_executor_args_replace"])

        @app.task
        async def hit(state: Hits, step: int) -> int:
            return (await state.update(n=(await state.get("n", 0)) + step))["n"]  # type: ignore[no-any-return]

        hits.append(hit)
    with WorkerThread(apps[0], worker_id="a", broker_url="memory://"), \
            WorkerThread(apps[1], worker_id="b", broker_url="memory://"):
        one = apps[0].wait(hits[0].add_task(2).uuid, 10)
        two = apps[1].wait(hits[1].add_task(3).uuid, 10)
    assert one is not None and one.returning == 2, one
    assert two is not None and two.returning == 5, two  # the other app's worker saw the same store
    assert plugin.state(Hits)._data == {"n": 5}  # and code outside the tasks reads it through the plugin


def test_state_plugin_refuses_what_it_cannot_honour() -> None:
    with pytest.raises(ValueError, match="accept_annotated"):
        SyncStatePlugin(accept_annotated=False)


def test_depends_plugin_added_the_qtasks_way_with_qtasks_scopes() -> None:
    app = make_app("depends")
    app.add_plugin(AsyncDependsPlugin(), trigger_names=["task_executor_args_replace", "task_executor_task_close",
                                                        "worker_stop", "broker_stop", "storage_stop",
                                                        "global_config_stop"])
    opened: list[str] = []

    def pool() -> Any:
        opened.append("pool")
        yield "pool"
        opened.append("closed")

    @app.task
    def use(n: int, conn: str = Depends(pool, scope=ScopeEnum.BROKER)) -> str:  # type: ignore[assignment]
        return f"{conn}{n}"

    with WorkerThread(app, broker_url="memory://"):
        a = app.wait(use.add_task(1).uuid, 10)
        b = app.wait(use.add_task(2).uuid, 10)
    assert a is not None and b is not None and (a.returning, b.returning) == ("pool1", "pool2"), (a, b)
    assert opened == ["pool", "closed"]  # one per worker process, closed when the worker stopped
