"""QTasks' other public schemas under ``qtasks_fast.schemas`` (issue 11): the names a ported storage, plugin or
app touches, with QTasks' fields and meaning (the field lists below are QTasks 1.7.3's, read from its source)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.configs import SyncInMemoryGlobalConfig
from qtasks_fast.middleware import Middleware
from qtasks_fast.schemas import (
    GlobalConfigSchema,
    TaskExecSchema,
    TaskStatusCancelSchema,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
    status_schema,
)
from qtasks_fast.schemas.task_exec import TaskExecSchema as TaskExecSchemaByModule
from qtasks_fast.schemas.task_status import BaseTaskStatusSchema
from qtasks_fast.testing import WorkerThread

BASE = ["task_name", "priority", "args", "kwargs", "created_at", "updated_at"]


@pytest.mark.parametrize(("cls", "fields", "status"), [
    (TaskStatusNewSchema, [*BASE, "status"], "new"),
    (TaskStatusProcessSchema, [*BASE, "status"], "process"),
    (TaskStatusSuccessSchema, [*BASE, "status", "returning"], "success"),
    (TaskStatusErrorSchema, [*BASE, "status", "traceback"], "error"),
    (TaskStatusCancelSchema, [*BASE, "status", "cancel_reason"], "cancel"),
])
def test_status_schemas_have_qtasks_fields_and_json_arguments(cls: type, fields: list[str], status: str) -> None:
    assert [f.name for f in dataclasses.fields(cls)] == fields
    made = cls(task_name="add", priority=2, args=[1, "x"], kwargs={"k": [1]})
    assert isinstance(made, BaseTaskStatusSchema) and made.status == status
    assert (made.args, made.kwargs) == ('[1, "x"]', '{"k": [1]}')  # QTasks stores arguments as JSON text
    assert cls(args="[3]").args == "[3]" and made.updated_at > 0


def test_status_schema_of_a_finished_record(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def pair(a: int, b: str) -> dict[str, Any]:
        return {"a": a, "b": b}

    @app.task
    def boom() -> None:
        raise RuntimeError("no")

    with WorkerThread(app):
        done = app.add_task("pair", 1, b="z", timeout=20)
        failed = app.add_task("boom", timeout=20)
    assert done is not None and failed is not None
    ok = status_schema(done)
    assert isinstance(ok, TaskStatusSuccessSchema) and ok.task_name == "pair"
    assert (json.loads(ok.args), json.loads(ok.kwargs)) == (list(done.args), done.kwargs)
    assert json.loads(ok.returning) == {"a": 1, "b": "z"}
    assert ok.created_at == done.created_at.timestamp() and ok.updated_at == done.updated_at.timestamp()
    err = status_schema(failed)
    assert isinstance(err, TaskStatusErrorSchema) and "RuntimeError: no" in err.traceback


def test_task_exec_schema_is_what_app_tasks_holds(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")
    seen: list[Any] = []

    class Seen(Middleware):
        def before_execute(self, ctx: Any) -> None:
            seen.append(ctx.task_name)

    @app.task(priority=3, max_time=5, tags=["t"])
    async def coro(x: int) -> int:
        return x

    @app.task
    def gen() -> Any:
        yield 1

    @app.task
    def plain(x: int) -> int:
        return x + 1

    assert TaskExecSchemaByModule is TaskExecSchema
    task = app.tasks["coro"]
    assert isinstance(task, TaskExecSchema)
    assert (task.name, task.priority, task.max_time, task.tags, task.awaiting, task.generating) == \
        ("coro", 3, 5, ["t"], True, False)
    assert (app.tasks["gen"].awaiting, app.tasks["gen"].generating, app.tasks["plain"].extra) == (False, "sync", {})
    app.tasks["plain"].add_middlewares_before([Seen])  # QTasks' call: the middleware runs from then on
    with WorkerThread(app):
        done = app.add_task("plain", 1, timeout=20)
    assert done is not None and done.returning == 2 and seen == ["plain"]


def test_global_config_schema_is_the_running_status_record() -> None:
    assert [f.name for f in dataclasses.fields(GlobalConfigSchema)] == ["name", "status"]
    config = SyncInMemoryGlobalConfig(name="proj")
    config.start()
    try:
        assert config.get("main", "status") == GlobalConfigSchema(name="proj", status="running").status
        assert config.get_all("main") == dataclasses.asdict(GlobalConfigSchema(name="proj", status="running"))
    finally:
        config.stop()
