"""A plugin written for QTasks, at QTasks' producer and executor triggers, gets QTasks' keyword arguments and may
return QTasks' keys: ``qtasks_add_task_before_broker`` (``qtasks``, ``broker``, ``task_name``, ``priority``,
``args``, ``kw``; returns ``args``/``kw``/``priority``/``task_name``/``extra``), ``task_executor_args_replace``
(``task_executor``, ``args``, ``kw``, ``args_info``; returns ``args``/``kw``) and ``worker_execute_before``
(``worker``, ``task_func``, ``task_broker``, ``model``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.plugins import BasePlugin, qtasks_kw
from qtasks_fast.testing import WorkerThread


def make_app() -> QueueTasks:
    app = QueueTasks(f"qkw{time.monotonic_ns()}", broker_url="memory://")

    @app.task
    def echo_args(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": list(args), "kwargs": kwargs}

    @app.task
    def other(*args: Any, **kwargs: Any) -> str:
        return "other"

    return app


class QTasksStylePlugin(BasePlugin):
    """The review's reproduction: a plugin as written for QTasks 1.7.3."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, dict[str, Any]] = {}

    def trigger(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self.seen[name] = kwargs
        if name == "qtasks_add_task_before_broker":
            return {"args": tuple(kwargs["args"]) + ("added",), "kw": {**kwargs["kw"], "k2": "v2"}}
        if name == "task_executor_args_replace":
            return {"args": list(kwargs["args"]), "kw": {**kwargs["kw"], "k3": "v3"}}
        if name == "worker_execute_before":
            return {"model": kwargs["model"]}
        return None


def test_qtasks_keywords_in_and_qtasks_keys_out() -> None:
    """Review 11 finding 6: ``KeyError: 'args'`` escaped add_task, and ``KeyError: 'kw'`` made every task fail."""
    app = make_app()
    producer, executor, worker = QTasksStylePlugin(), QTasksStylePlugin(), QTasksStylePlugin()
    app.add_plugin(producer, trigger_names=["qtasks_add_task_before_broker"], component=None)
    app.add_plugin(executor, trigger_names=["task_executor_args_replace"], component="worker")
    app.add_plugin(worker, trigger_names=["worker_execute_before"], component="worker")
    with WorkerThread(app):
        done = app.add_task("echo_args", 1, k="v", timeout=10)
    assert done is not None and done.status == "success", done
    assert done.returning == {"args": [1, "added"], "kwargs": {"k": "v", "k2": "v2", "k3": "v3"}}

    sent = producer.seen["qtasks_add_task_before_broker"]
    assert sent["qtasks"] is app and sent["broker"] is app.broker
    assert (sent["task_name"], sent["priority"], sent["args"], sent["kw"]) == ("echo_args", 0, (1,), {"k": "v"})
    ran = executor.seen["task_executor_args_replace"]
    assert ran["args"] == [1, "added"] and ran["kw"] == {"k": "v", "k2": "v2"}
    assert [(a.name, a.value, a.is_kwarg) for a in ran["args_info"]] == [
        ("args", 1, False),
        ("kwargs", "added", False),
        ("k", "v", True),
        ("k2", "v2", True),
    ]
    assert ran["task_executor"] is not None
    before = worker.seen["worker_execute_before"]
    assert before["model"].task_name == "echo_args" and before["model"].status == "process"
    assert before["task_func"].name == "echo_args" and before["task_broker"].uuid == str(done.uuid)
    assert "worker" in before


def test_priority_task_name_and_extra_returned_at_the_producer_trigger() -> None:
    app = make_app()

    class Reroute(BasePlugin):
        def trigger(self, name: str, **kwargs: Any) -> dict[str, Any]:
            return {"task_name": "other", "priority": 21, "extra": {"tenant": "acme"}}

    app.add_plugin(Reroute(), trigger_names=["qtasks_add_task_before_broker"])
    task = app.add_task("echo_args", 1)
    assert task is not None and task.task_name == "other" and task.priority == 9  # 21: past the top level
    env, _ = app.build("echo_args", [1], {})
    assert env.meta["tenant"] == "acme"


def test_a_returned_model_is_said_not_applied_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker writes the record itself: QTasks' returned ``model`` is dropped (not a failed task), said once."""
    monkeypatch.setattr(qtasks_kw, "_said", set())
    app = make_app()
    plugin = QTasksStylePlugin()
    app.add_plugin(plugin, trigger_names=["worker_execute_before"], component="worker")
    with caplog.at_level(logging.WARNING, logger="qtasks_fast"), WorkerThread(app):
        for _ in range(2):
            done = app.add_task("echo_args", timeout=10)
            assert done is not None and done.status == "success", done
    said = [r.getMessage() for r in caplog.records if "returned 'model'" in r.getMessage()]
    assert len(said) == 1, said
