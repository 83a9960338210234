"""QTasks' ``task_executor_run_task_trigger_error`` (issue 11, item 3): a plugin listening there turns the
``TaskPluginTriggerError`` a task raises with ``self.ctx.plugin_error(**kw)`` into the task's result.

What a user relies on, as in QTasks' executor: the plugin gets the exception as ``e`` (its keyword arguments on
``e.kwargs``) and returns ``{"result": value}``; the task then ends with success and that value. A plugin that
returns nothing leaves the failure as it was, and any other exception of the task is not the plugin's to turn.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.middleware import Middleware
from qtasks_fast.testing import WorkerThread
from qtasks_fast.worker.context import ExecContext
from qtasks_fast.worker.procexec import _plugin_error_reply


class Fallback(BasePlugin):
    """Answers a plugin error whose ``kind`` it knows; stays silent for the others."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def trigger(self, name: str, **kw: Any) -> dict[str, Any] | None:
        self.seen.append((name, dict(kw["e"].kwargs)))
        if kw["e"].kwargs.get("kind") == "known":
            return {"result": {"fallback": kw["e"].kwargs["value"] * 2, "task": kw["task_name"]}}
        return None


def build() -> tuple[QueueTasks, Fallback]:
    app = QueueTasks(name=f"pe{uuid.uuid4().hex[:8]}", broker_url="memory://")
    plugin = Fallback()
    app.add_plugin(plugin, ["task_executor_run_task_trigger_error"], component="worker")

    @app.task(echo=True)
    def sync_fails(self: Any, kind: str, value: int) -> int:
        self.ctx.plugin_error(kind=kind, value=value)
        return -1

    @app.task(echo=True)
    async def async_fails(self: Any, kind: str, value: int) -> int:
        await asyncio.sleep(0)
        self.ctx.plugin_error(kind=kind, value=value)
        return -1

    @app.task
    def plain_error(value: int) -> int:
        raise ValueError(f"bad {value}")

    return app, plugin


def test_a_plugin_turns_plugin_error_into_the_result() -> None:
    app, plugin = build()
    with WorkerThread(app):
        done = {name: app.add_task(name, "known", 21, timeout=10) for name in ("sync_fails", "async_fails")}
    for name, task in done.items():
        assert task is not None and task.status == "success", (name, task)
        assert task.returning == {"fallback": 42, "task": name}
    assert plugin.seen == [("task_executor_run_task_trigger_error", {"kind": "known", "value": 21})] * 2


def test_without_an_answer_the_task_fails_and_other_errors_are_untouched() -> None:
    app, plugin = build()
    with WorkerThread(app):
        unknown = app.add_task("sync_fails", "other", 5, timeout=10)
        plain = app.add_task("plain_error", 7, timeout=10)
    assert unknown is not None and unknown.status == "error"
    assert "TaskPluginTriggerError" in (unknown.traceback or ""), unknown.traceback
    assert plain is not None and plain.status == "error" and "ValueError: bad 7" in (plain.traceback or "")
    assert plugin.seen == [("task_executor_run_task_trigger_error", {"kind": "other", "value": 5})]


class Default(Middleware):
    """A middleware's own ``recover``: a ``LookupError`` ends the task with ``"default"``, the rest still fail."""

    def recover(self, ctx: ExecContext, exc: Exception) -> Any:
        if isinstance(exc, LookupError):
            return "default"
        raise exc


def test_a_middleware_recover_hook_turns_chosen_errors_into_results() -> None:
    app = QueueTasks(name=f"rc{uuid.uuid4().hex[:8]}", broker_url="memory://")
    app.add_middleware(Default)

    @app.task
    def lookup(key: str) -> str:
        if key == "boom":
            raise ValueError("boom")
        return {"a": "found"}[key]

    with WorkerThread(app):
        found, missing, bad = (app.add_task("lookup", k, timeout=10) for k in ("a", "zz", "boom"))
    assert found is not None and (found.status, found.returning) == ("success", "found")
    assert missing is not None and (missing.status, missing.returning) == ("success", "default")
    assert bad is not None and bad.status == "error" and "ValueError: boom" in (bad.traceback or "")


EXECUTORS_MODULE = '''
from typing import Any

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.exc import TaskPluginTriggerError
from qtasks_fast.middleware import Middleware

app = QueueTasks("{name}", broker_url="memory://")


class Fallback(BasePlugin):
    async def trigger(self, name: str, **kw: Any) -> Any:
        if kw["e"].kwargs.get("kind") == "plugin":
            return {{"result": {{"fallback": kw["e"].kwargs["value"] * 2, "task": kw["task_name"]}}}}
        return None


class Recover(Middleware):
    def recover(self, ctx: Any, exc: Exception) -> Any:
        if isinstance(exc, TaskPluginTriggerError) and exc.kwargs.get("kind") == "middleware":
            return f"recovered {{exc.kwargs['value']}}"
        raise exc


app.add_plugin(Fallback(), ["task_executor_run_task_trigger_error"], component="worker")
app.add_middleware(Recover)


@app.task(echo=True, executor="process")
def in_process(self: Any, kind: str, value: int) -> int:
    self.ctx.plugin_error(kind=kind, value=value)
    return -1


@app.task(echo=True, executor="thread")
def in_thread(self: Any, kind: str, value: int) -> int:
    self.ctx.plugin_error(kind=kind, value=value)
    return -1
'''


@pytest.fixture
def executors_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An app in a module of its own (a process child imports it by name) with both executors' tasks."""
    name = f"pe_exec_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(EXECUTORS_MODULE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield importlib.import_module(name).app
    finally:
        sys.modules.pop(name, None)


def test_plugin_error_is_recovered_alike_in_a_process_and_a_thread(executors_app: Any) -> None:
    """A ``ctx.plugin_error`` in an ``executor="process"`` task reaches the worker's plugin and middleware with its
    keyword arguments, as one in a thread does: the same records either way."""
    app = executors_app
    with WorkerThread(app):
        done = {(task, kind): app.add_task(task, kind, 21, timeout=30)
                for task in ("in_process", "in_thread") for kind in ("plugin", "middleware", "neither")}
    for task in ("in_process", "in_thread"):
        by_plugin, by_middleware, failed = (done[task, kind] for kind in ("plugin", "middleware", "neither"))
        assert by_plugin is not None and (by_plugin.status, by_plugin.returning) == \
            ("success", {"fallback": 42, "task": task}), by_plugin
        assert by_middleware is not None and (by_middleware.status, by_middleware.returning) == \
            ("success", "recovered 21"), by_middleware
        assert failed is not None and failed.status == "error" and "TaskPluginTriggerError" in (failed.traceback or "")


def test_plugin_error_arguments_msgpack_cannot_carry_reach_the_worker_as_their_repr() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "<Odd>"

    reply = msgspec.msgpack.decode(_plugin_error_reply(["error", "tb", "msg", []], {"thing": Odd(), "n": 1}))
    assert reply == ["error", "tb", "msg", [], {"thing": "<Odd>", "n": "1"}]
