"""QTasks user code importing from ``qtasks.plugins`` works with only the import changed (issue 11, item 4).

What a user relies on: ``from qtasks.plugins import AsyncState, SyncState, Depends`` and
``from qtasks.plugins.base import BasePlugin`` become ``qtasks_fast.plugins...``, and the tasks written with them
behave as in QTasks in a real worker: a State subclass parameter is filled by the worker and keeps its values
across tasks, a ``Depends`` parameter is filled in the worker, and a plugin subclassing ``plugins.base.BasePlugin``
is called at its trigger. The old ``from qtasks_fast.plugins import BasePlugin, TRIGGERS`` keeps working.
"""

from __future__ import annotations

import time

from qtasks_fast import QueueTasks
from qtasks_fast.plugins import AsyncState, Depends, SyncState
from qtasks_fast.plugins.base import BasePlugin
from qtasks_fast.testing import WorkerThread


class Counter(AsyncState):
    """A QTasks-style async state namespace."""


class Seen(SyncState):
    """A QTasks-style sync state namespace."""


def make_app() -> QueueTasks:
    return QueueTasks(f"plugpkg{time.monotonic_ns()}", broker_url="memory://")


def test_state_and_depends_from_the_plugins_package_are_injected_by_the_worker() -> None:
    app = make_app()

    def tenant() -> str:
        return "acme"

    @app.task
    async def bump(state: Counter, step: int, who: str = Depends(tenant)) -> list:  # type: ignore[assignment]
        total = (await state.get("n", 0)) + step
        await state.set("n", total)
        return [total, who]

    @app.task
    def mark(seen: Seen, word: str) -> list:
        seen.set(word, True)
        return sorted(seen.get_all())

    with WorkerThread(app, broker_url="memory://"):
        first = app.wait(bump.add_task(2).uuid, 10)
        second = app.wait(bump.add_task(5).uuid, 10)
        app.wait(mark.add_task("a").uuid, 10)
        marked = app.wait(mark.add_task("b").uuid, 10)
    assert first is not None and first.status == "success" and first.returning == [2, "acme"], first
    assert second is not None and second.returning == [7, "acme"], second  # kept across tasks
    assert marked is not None and marked.returning == ["a", "b"], marked
    assert first.args == (2,) and first.kwargs == {}  # nothing injected travelled


def test_a_plugin_subclassing_plugins_base_is_called_at_its_trigger() -> None:
    app = make_app()
    seen: list[tuple[str, object]] = []

    class Upper(BasePlugin):
        async def trigger(self, name: str, **kw: object) -> dict | None:
            if name == "task_executor_before_execute":
                return {"args": [str(a).upper() for a in kw["args"]]}  # type: ignore[attr-defined]
            seen.append((name, kw.get("result")))
            return None

    app.add_plugin(Upper(), trigger_names=["task_executor_before_execute", "task_executor_after_execute"],
                   component="worker")

    @app.task
    def shout(word: str) -> str:
        return word + "!"

    with WorkerThread(app, broker_url="memory://"):
        done = app.wait(shout.add_task("hi").uuid, 10)
    assert done is not None and done.status == "success" and done.returning == "HI!", done
    assert seen == [("task_executor_after_execute", "HI!")]


def test_the_old_module_names_still_import() -> None:
    from qtasks_fast.plugins import TRIGGERS, Plugins
    from qtasks_fast.plugins import BasePlugin as Same

    assert Same is BasePlugin and "task_before_execute" in TRIGGERS["worker"] and not Plugins()
