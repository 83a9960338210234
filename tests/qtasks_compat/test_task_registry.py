"""QTasks' ``qtasks.registries.TaskRegistry`` under qtasks_fast (issue 11).

What a user relies on: code that registers a task through ``TaskRegistry.register(...)`` (what QTasks'
``shared_task`` does) gets a task of every app, run by their workers with the options it gave, and code that
looks tasks up through ``get_task``/``all_tasks`` finds them, including the ones ``@shared_task`` declared.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apps.testkit import forget_shared_tasks

from qtasks_fast import QueueTasks, router, shared_task
from qtasks_fast.registries import TaskRegistry
from qtasks_fast.registries.task_registry import TaskRegistry as TaskRegistryByModule
from qtasks_fast.testing import WorkerThread


@pytest.fixture(autouse=True)
def _forget_shared() -> Iterator[None]:
    before = set(router._shared)
    yield
    forget_shared_tasks(before)


def test_a_registered_task_joins_every_app_and_runs_with_its_options(app_name: str) -> None:
    early = QueueTasks(app_name, broker_url="memory://")
    attempts: list[int] = []

    @TaskRegistry.register(name=f"{app_name}_flaky", retry=2, tags=["qtasks"])
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first attempt fails")
        return x * 2

    late = QueueTasks(f"{app_name}b", broker_url="memory://")
    name = f"{app_name}_flaky"
    for app in (early, late):  # created before and after the registration
        assert app.tasks[name].func is flaky.func and app.tasks[name].retry == 2 and app.tasks[name].tags == ["qtasks"]
    with WorkerThread(late):
        first = flaky.add_task(21)  # a shared task's calls go to the main app: the one created last
        done = late.wait(first.uuid, 20)
    assert done is not None and done.status == "success" and done.returning == 42, done
    assert attempts == [21, 21]


def test_lookups_find_registered_and_shared_tasks(app_name: str) -> None:
    assert TaskRegistryByModule is TaskRegistry
    assert TaskRegistry.get_task(f"{app_name}_none") is None

    @TaskRegistry.register()
    def plain_registered() -> int:
        return 1

    @shared_task(name=f"{app_name}_shared", priority=3)
    def shared() -> int:
        return 2

    everything = TaskRegistry.all_tasks()
    assert everything["plain_registered"] is plain_registered and everything[f"{app_name}_shared"] is shared
    found = TaskRegistry.get_task(f"{app_name}_shared")
    assert found is shared and found.func() == 2 and found.name == f"{app_name}_shared"
    QueueTasks(app_name, broker_url="memory://")
    assert found.priority == 3  # the fields of a registered task, read through the main app's
    everything.clear()  # a copy: the registry is changed through register only
    assert TaskRegistry.get_task("plain_registered") is plain_registered
