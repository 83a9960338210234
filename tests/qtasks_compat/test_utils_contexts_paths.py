"""QTasks' ``qtasks.utils.shared_task``, ``qtasks.contexts.SyncContext/AsyncContext``,
``qtasks.middlewares.base.BaseMiddleware`` and ``qtasks.registries.SyncTask/AsyncTask`` under qtasks_fast
(issue 11): what code written against them does."""

from __future__ import annotations

from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.contexts import AsyncContext, SyncContext
from qtasks_fast.middlewares import TaskMiddleware
from qtasks_fast.middlewares.base import BaseMiddleware
from qtasks_fast.registries import AsyncTask, SyncTask
from qtasks_fast.testing import WorkerThread
from qtasks_fast.utils import shared_task


def test_shared_task_from_utils_joins_the_app_and_ctx_is_a_context(app_name: str) -> None:
    @shared_task(name=f"{app_name}_shared", echo=True)
    def checks(self: Any) -> list[bool]:
        return [isinstance(self.ctx, SyncContext), isinstance(self.ctx, AsyncContext), self.ctx.task_name == name]

    name = f"{app_name}_shared"
    app = QueueTasks(app_name, broker_url="memory://")
    assert name in app.tasks and app.tasks[name].func is checks.func
    with WorkerThread(app):
        done = app.add_task(name, timeout=20)
    assert done is not None and done.returning == [True, True, True]


def test_base_middleware_is_the_named_base_of_task_middleware() -> None:
    class Named(BaseMiddleware):
        def __init__(self) -> None:
            super().__init__(name="Named")

    assert Named().name == "Named" and issubclass(TaskMiddleware, BaseMiddleware)
    assert TaskMiddleware(task_executor=None).name == "TaskMiddleware"


def test_registries_task_names_cover_the_task_and_an_echo_tasks_self(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task(echo=True)
    def me(self: SyncTask) -> list[Any]:
        return [isinstance(self, SyncTask), isinstance(self, AsyncTask), self.name, self.ctx.task_name]

    assert isinstance(me, SyncTask) and isinstance(app.tasks["me"], AsyncTask) and not isinstance(app, SyncTask)
    with WorkerThread(app):
        done = app.add_task("me", timeout=20)
    assert done is not None and done.returning == [True, True, "me", "me"]
    with pytest.raises(TypeError, match="@app.task"):
        SyncTask()
