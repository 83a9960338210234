"""A QTasks application ported by changing its imports only (issue 11): ``ported/shop_qtasks.py`` is written for
QTasks 1.7.3 (sync and async tasks, an echo task using its context, a router, a QTasks-style middleware, a plugin at
QTasks' trigger name, a Redis GlobalConfig, events, ``stats.inspect()``, results and SyncTestCase); this test
changes ``qtasks`` to ``qtasks_fast`` in its ``import``/``from`` lines and nothing else, then runs its scenario.

What a user relies on: the promise of the port, checked on one whole app rather than piece by piece: it imports,
registers, runs on a worker, and every call answers what QTasks answers.
"""

from __future__ import annotations

import re
import sys
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

PORTED = Path(__file__).parent / "ported"


def ported_source(source: Path) -> str:
    """The app with ``qtasks`` -> ``qtasks_fast`` in its import lines, the only change a port makes."""
    text = source.read_text()
    ported, changed = re.subn(r"^(from|import) qtasks(\b)", r"\1 qtasks_fast\2", text, flags=re.M)
    assert changed >= 10 and "qtasks_fast" not in text
    assert [line for line in ported.splitlines() if "qtasks" in line and "qtasks_fast" not in line and
            line.startswith(("from", "import"))] == []
    return ported


def load(source: Path, name: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setenv("SHOP_APP_NAME", name)
    monkeypatch.setenv("SHOP_REDIS_URL", redis_url)
    module = types.ModuleType(f"ported_{source.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(ported_source(source), str(source), "exec"), module.__dict__)
    return module


def forget(name: str, redis_url: str) -> None:
    """The GlobalConfig keys the app wrote (flush_all removes the rest)."""
    client = redis.Redis.from_url(redis_url)
    client.delete(*client.keys(f"{name}:GlobalConfig*") or [f"{name}:GlobalConfig:main"])
    client.close()


def test_a_qtasks_app_runs_with_its_imports_changed(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"shop{uuid.uuid4().hex[:8]}"
    module = load(PORTED / "shop_qtasks.py", name, redis_url, monkeypatch)
    try:
        out: dict[str, Any] = module.run_scenario()
    finally:
        module.app.flush_all()
        forget(name, redis_url)
    assert out["add"] == 5 and out["mul"] == 20 and out["result"] == 30
    assert out["hello"] == "HELLO ADA"  # the QTasks 'after' middleware replaced the result
    assert out["stepper"] == {"uuid": out["stepper_uuid"], "name": "stepper", "max_tasks_process": 4}
    assert out["cancelled"] == "cancel" and out["cancel_error_is_exception"]
    assert out["task_status"] == out["status_success"] == "success"
    assert {"add", "hello", "mul", "stepper"} <= set(out["stats_tasks"])
    assert "add" in out["stats_text"] and "a: int, b: int" in out["stats_text"]  # QTasks' text block
    assert out["global_config"] == "hi"
    assert out["seen"].count("task_executor_before_execute") >= 6, out["seen"]  # one per task run
    assert out["seen"].count("task_success") >= 5, out["seen"]


async def test_a_qtasks_async_app_runs_with_its_imports_changed(redis_url: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ashop{uuid.uuid4().hex[:8]}"
    module = load(PORTED / "shop_async_qtasks.py", name, redis_url, monkeypatch)
    try:
        out: dict[str, Any] = await module.run_scenario()
    finally:
        await module.app.flush_all()
        forget(name, redis_url)
    assert out["square"] == 49 and out["result"] == 9 and out["sync_in_async_app"] == 2
    assert out["tagged"] == "v:mw"  # the async 'before' middleware added the keyword
    assert out["looker"] == {"other_status": "success", "me": True}  # ctx.sleep, get_task, get_metadata
    assert out["needs_plugin"] == "recovered"  # plugin_error answered by the plugin at QTasks' trigger name
    assert "task_executor_run_task_trigger_error" in out["seen"], out["seen"]
    assert {"square", "tagged", "looker", "needs_plugin"} <= set(out["stats_tasks"])
    assert out["global_config"] == "async" and out["plugin_error_is"] == "TaskPluginTriggerError"
