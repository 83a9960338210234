"""QTasks' ``SyncTestPlugin``/``AsyncTestPlugin`` under qtasks_fast (issue 11).

What a user relies on: with the plugin added (the QTasks way, or with no trigger names), the records of a task
declared ``@app.task(test=...)`` carry ``is_testing`` (the option's value), as attribute and in ``task.extra``:
the one ``add_task`` returns, the final one a real worker stored, the one ``app.get`` reads back, a retry's;
on every backend. Without the plugin, or for a task without ``test``, there is no such field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.plugins import AsyncTestPlugin, SyncTestPlugin
from qtasks_fast.plugins.testing import SyncTestPlugin as SyncTestPluginByModule
from qtasks_fast.testing import WorkerThread


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/q.sqlite3"


def app_with_tasks(app: Any) -> list[int]:
    calls: list[int] = []

    @app.task(test=True, retry=1)
    def checked(x: int) -> int:
        calls.append(x)
        if len(calls) == 1:
            raise ValueError("the first attempt fails: its retry keeps the field")
        return x + 1

    @app.task(test="smoke")
    def labelled() -> str:
        return "ok"

    @app.task
    def plain() -> str:
        return "plain"

    return calls


def test_records_of_test_tasks_say_so_through_a_real_worker(app_name: str, url: str) -> None:
    app = QueueTasks(app_name, broker_url=url)
    app.add_plugin(SyncTestPlugin(), trigger_names=["worker_execute_before", "worker_remove_finished_task"],
                   component="worker")  # QTasks' registration
    calls = app_with_tasks(app)
    with WorkerThread(app):
        sent = app.add_task("checked", 4)
        done = app.wait(sent.uuid, 20)
        first = app.get(sent.uuid)
        labelled = app.add_task("labelled", timeout=20)
        plain = app.add_task("plain", timeout=20)
    assert sent.is_testing is True and sent.extra == {"is_testing": True}
    assert done is not None and done.status == "success" and done.returning == 5 and calls == [4, 4], done
    assert done.retry_parent_uuid == sent.uuid and done.is_testing is True  # the retry's record
    assert first is not None and first.status == "error" and first.is_testing is True
    assert labelled is not None and labelled.returning == "ok" and labelled.is_testing == "smoke"
    assert plain is not None and plain.returning == "plain" and plain.extra is None
    with pytest.raises(AttributeError, match="is_testing"):
        _ = plain.is_testing


async def test_async_client_and_no_trigger_names(app_name: str, url: str) -> None:
    assert SyncTestPluginByModule is SyncTestPlugin
    app = AsyncQueueTasks(app_name, broker_url=url)
    app_with_tasks(app)
    app.add_plugin(AsyncTestPlugin())  # after the tasks, with no trigger names: as QTasks' add_plugin(plugin)
    with WorkerThread(app):
        done = await app.add_task("labelled", timeout=20)
        assert done is not None and done.returning == "ok" and done.is_testing == "smoke"
        again = await app.get(done.uuid)
    assert again is not None and again.extra == {"is_testing": "smoke"}


def test_without_the_plugin_the_option_is_kept_and_records_have_no_field(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    app_with_tasks(app)
    assert app.tasks["labelled"].extra == {"test": "smoke"}  # QTasks' TaskExecSchema.extra
    with WorkerThread(app):
        done = app.add_task("labelled", timeout=20)
    assert done is not None and done.returning == "ok" and done.extra is None
    assert not hasattr(done, "is_testing")
