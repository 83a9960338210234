"""QTasks' plugin trigger names (issue 11): an alias of ours where the meaning maps, refused with the closest
trigger named where it does not.

What a user relies on: a plugin written for QTasks registers with QTasks' names and components and is called
at the same point of a task's life, with the name it asked for (its ``if name == ...`` matches); a QTasks
name with no counterpart fails at ``add_plugin`` with a one-line message naming our closest trigger, never a
plugin that silently never runs. Every trigger name QTasks 1.7.3 fires is one or the other.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.plugins import TRIGGERS
from qtasks_fast.testing import WorkerThread

#: every trigger name QTasks 1.7.3 fires (read from its source: ``_plugin_trigger("...")``)
QTASKS_TRIGGERS = """
broker_add_after broker_add_before broker_add_worker broker_flush_all broker_get broker_listen_start
broker_remove_finished_task broker_running_older_tasks broker_start broker_stop broker_update
global_config_get global_config_get_all global_config_get_match global_config_set global_config_set_status
global_config_start global_config_stop qtasks_add_task_after_broker qtasks_add_task_before_broker
qtasks_flush_all qtasks_get qtasks_ping qtasks_stop starter_start starter_stop stats_inspect storage_add
storage_add_process storage_delete_finished_tasks storage_flush_all storage_get storage_get_all
storage_remove_finished_task storage_running_older_tasks storage_start storage_stop storage_update
task_executor_after_execute task_executor_after_execute_result_replace task_executor_args_replace
task_executor_before_execute task_executor_decode task_executor_middlewares_execute task_executor_run_task
task_executor_run_task_gen task_executor_run_task_trigger_error task_executor_task_close worker_add
worker_execute_after worker_execute_before worker_remove_finished_task worker_run_task_before worker_start
worker_stop worker_task_error_retry
""".split()
OURS = {n for names in TRIGGERS.values() for n in names}


class Recorder(BasePlugin):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def trigger(self, name: str, **kw: Any) -> dict[str, Any] | None:
        self.calls.append(name)
        if name == "task_executor_args_replace":  # QTasks' keys: "kw" for the keyword arguments
            return {"args": [kw["args"][0] * 10], "kw": kw["kwargs"]}
        return None


def new_app() -> QueueTasks:
    app = QueueTasks(name=f"pn{uuid.uuid4().hex[:8]}", broker_url="memory://")

    @app.task
    def double(x: int) -> int:
        return x * 2

    return app


@pytest.mark.parametrize("name", sorted(set(QTASKS_TRIGGERS) - OURS))
def test_every_qtasks_trigger_is_an_alias_or_refused_naming_the_closest(name: str) -> None:
    plugin = Recorder()
    app = new_app()
    try:
        app.add_plugin(plugin, trigger_names=[name], component=None)
    except ValueError as exc:
        message = str(exc)
        assert f"QTasks trigger {name!r} has no counterpart" in message and "\n" not in message
        assert any(f"{ours} (component='" in message for ours in OURS), message
        assert not app.plugins.all()
    else:
        assert app.plugins.all() == [plugin]


def test_aliases_fire_at_our_points_with_the_qtasks_name() -> None:
    app = new_app()
    worker_side, producer_side, broker_side = Recorder(), Recorder(), Recorder()
    app.add_plugin(worker_side, ["task_executor_before_execute", "worker_execute_after"], component="worker")
    app.add_plugin(producer_side, ["broker_add_before", "qtasks_add_task_after_broker"], component="broker")
    app.add_plugin(broker_side, ["storage_start", "storage_update"], component="storage")
    with WorkerThread(app):
        done = app.add_task("double", 4, timeout=10)
    assert done is not None and done.returning == 8
    assert worker_side.calls == ["task_executor_before_execute", "worker_execute_after"]
    assert producer_side.calls == ["broker_add_before", "qtasks_add_task_after_broker"]
    assert broker_side.calls[0] == "storage_start" and "storage_update" in broker_side.calls


def test_args_replace_alias_renames_qtasks_keys() -> None:
    app = new_app()
    app.add_plugin(Recorder(), ["task_executor_args_replace"], component="worker")
    with WorkerThread(app):
        done = app.add_task("double", 4, timeout=10)
    assert done is not None and done.returning == 80


def test_refused_name_leaves_the_app_without_the_plugin() -> None:
    app = new_app()
    with pytest.raises(ValueError, match="'task_executor_after_execute_result_replace' has no counterpart.*"
                                         "task_after_execute \\(component='worker'\\)"):
        app.add_plugin(Recorder(), ["task_executor_before_execute", "task_executor_after_execute_result_replace"],
                       component="worker")
    assert not app.plugins
    with pytest.raises(ValueError, match="component 'worker' has no trigger 'no_such_trigger'"):
        app.add_plugin(Recorder(), ["no_such_trigger"], component="worker")


def test_component_none_takes_our_names_of_any_component() -> None:
    app = new_app()
    app.add_plugin(Recorder(), ["storage_save", "task_before_enqueue"], component=None)
    assert set(app.plugins.by_trigger) == {"storage_save", "task_before_enqueue"}
    with pytest.raises(ValueError, match="no component has a trigger 'nope'"):
        app.add_plugin(Recorder(), ["nope"], component=None)
