"""Plugins with named triggers: registration rules, and the triggers firing in real worker processes.

What a user relies on: ``app.add_plugin(plugin, trigger_names, component)`` accepts the documented
trigger names of a component and refuses others with the right component named; a plugin's
``trigger`` fires at each of them in the worker (start/stop, each task before and after its call,
broker start/stop, each stored batch) and in the producer (before/after enqueue); a returned dict
replaces the call's arguments, and the next plugin sees the replacement; an app without plugins
pays nothing (no middleware, plain path).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from apps.testkit import wait_for
from conftest import APPS, ProcessHarness

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.plugins import TRIGGERS


def load_app(name: str, url: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"plugins_app_{name}", APPS / "plugins_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, {"TEST_APP_NAME": name, "QTASKS_BROKER_URL": url}):
        spec.loader.exec_module(module)
    return module


def strings(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]




@pytest.fixture(scope="module")
def pool(tmp_path_factory: Any, redis_url: str) -> Any:
    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(Path(tmp_path_factory.mktemp("plugins")), name)
    m = load_app(name, redis_url)
    proc = h.start(redis_url, processes=1, app="plugins_app")
    h.wait_ready(proc, 1)
    yield h, m, proc, m.app.storage.conn.sync
    h.close()


def test_worker_and_producer_triggers_fire_and_replace_arguments(pool):
    h, m, proc, r = pool
    rec = m.greet.add_task("bob", timeout=20)
    # producer plugin added punct="!", the worker plugin upper-cased the positional arguments
    assert rec is not None and rec.status == "success" and rec.returning == "hi BOB!", rec
    assert strings(r.lrange(m.key(f"trace:{rec.uuid}"), 0, -1)) == [
        "before:['bob']", "second:['BOB']", "after:success:hi BOB!"]
    assert str(rec.uuid) in m.enqueued  # task_after_enqueue, in this (the producer's) process
    assert wait_for(lambda: strings(r.lrange(m.key(f"saved:{rec.uuid}"), 0, -1)), 10, "storage_save") == ["success"]


def test_after_execute_trigger_sees_errors(pool):
    h, m, proc, r = pool
    task = m.boom.add_task(3)
    final = m.app.wait(task.uuid, 20)
    assert final is not None and final.status == "error"
    for u in (task.uuid, final.uuid):  # the failed run and its retry both fired the triggers
        trace = strings(r.lrange(m.key(f"trace:{u}"), 0, -1))
        assert trace[0] == "before:[3]" and trace[-1] == "after:error:boom 3", trace


def test_lifecycle_triggers_fire_once_per_process_in_order(tmp_path, redis_url):
    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(tmp_path, name)
    try:
        m = load_app(name, redis_url)
        r = m.app.storage.conn.sync
        proc = h.start(redis_url, processes=1, app="plugins_app")
        h.wait_ready(proc, 1)
        pid = h.children(proc)[0].pid
        assert m.ok.add_task(1, timeout=20).returning == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        got = strings(r.lrange(m.key("lifecycle"), 0, -1))
    finally:
        h.close()
    # start() of each plugin, broker_start, worker_start; then worker_stop, broker_stop, stop()
    assert got == [f"start:{pid}", f"broker_start:RedisBroker:{pid}", f"worker_start:{pid}",
                   f"worker_stop:{pid}", f"broker_stop:RedisBroker:{pid}", f"stop:{pid}"], got


# ------------------------------------------------------------------------------ registration rules
class Noop(BasePlugin):
    def trigger(self, name: str, **kw: Any) -> None:
        return None


def test_unknown_trigger_names_are_refused_naming_the_right_component():
    app = QueueTasks("plugins-unit", broker_url="memory://")
    with pytest.raises(ValueError, match="'task_before_enqueue' is a trigger of component='producer'"):
        app.add_plugin(Noop(), trigger_names=["task_before_enqueue"], component="worker")
    with pytest.raises(ValueError, match="no component 'scheduler'"):
        app.add_plugin(Noop(), component="scheduler")
    with pytest.raises(TypeError, match="list of names"):
        app.add_plugin(Noop(), trigger_names="worker_start")
    with pytest.raises(TypeError, match="BasePlugin"):
        app.add_plugin(object(), component="worker")  # type: ignore[arg-type]
    assert not app.plugins
    assert set(TRIGGERS) == {"worker", "producer", "broker", "storage"}


def test_no_plugin_no_cost_and_one_middleware_per_per_task_trigger():
    app = QueueTasks("plugins-unit", broker_url="memory://")

    @app.task
    def f() -> None: ...

    app.add_plugin(Noop(), trigger_names=["worker_start"])
    app.add_plugin(Noop(), component="storage")
    assert app.middlewares_before == [] and f.middlewares == () and not f.needs_hooks()
    app.add_plugin(Noop(), trigger_names=["task_after_execute"])
    app.add_plugin(Noop(), trigger_names=["task_after_execute"])  # a second listener adds no second middleware
    assert [type(mw).__name__ for mw in f.middlewares] == ["_AfterExecute"] and f.needs_hooks()
    assert len(app.plugins.get("task_after_execute")) == 2


def test_a_bad_replacement_fails_the_enqueue_with_what_is_allowed():
    app = QueueTasks("plugins-unit", broker_url="memory://")

    class Bad(BasePlugin):
        async def trigger(self, name: str, **kw: Any) -> dict[str, Any]:  # async: run on the portal loop
            return {"queue": "elsewhere"}

    @app.task
    def f() -> None: ...

    app.add_plugin(Bad(), trigger_names=["task_before_enqueue"], component="producer")
    allowed = "'args', 'envelope', 'extra', 'kwargs', 'priority', 'task_name'"
    with pytest.raises(TypeError, match=r"returned \{'queue': 'elsewhere'\}.*" + allowed):
        f.add_task()


def test_producer_replacement_of_priority_reaches_the_envelope():
    app = QueueTasks("plugins-unit", broker_url="memory://")

    class Urgent(BasePlugin):
        def trigger(self, name: str, **kw: Any) -> dict[str, Any] | None:
            return {"priority": 0} if name == "task_before_enqueue" else None

    @app.task(priority=5)
    def f() -> None: ...

    app.add_plugin(Urgent(), component="producer")
    env, _ = app.build("f", (), {})
    assert env.priority == 0


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
