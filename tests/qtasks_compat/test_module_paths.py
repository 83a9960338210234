"""QTasks' module paths below its packages resolve (issue 11): QTasks' own examples import from them.

``from qtasks.asyncio.qtasks import QueueTasks`` and ``from qtasks.registries.async_task_decorator import
AsyncTask`` are the first lines of QTasks' ``examples/async/based_async_app.py``; with only ``qtasks`` ->
``qtasks_fast`` changed they must import, and give the same objects as the package paths.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

#: QTasks 1.7.3 module path (``qtasks`` -> ``qtasks_fast``), name, and the package path it must be
SAME = [
    ("qtasks_fast.qtasks", "QueueTasks", "qtasks_fast:QueueTasks"),
    ("qtasks_fast.version", "__version__", "qtasks_fast:__version__"),
    ("qtasks_fast.asyncio.qtasks", "QueueTasks", "qtasks_fast.asyncio:QueueTasks"),
    ("qtasks_fast.registries.sync_task_decorator", "SyncTask", "qtasks_fast.registries:SyncTask"),
    ("qtasks_fast.registries.async_task_decorator", "AsyncTask", "qtasks_fast.registries:AsyncTask"),
    ("qtasks_fast.results.sync_result", "SyncResult", "qtasks_fast.results:SyncResult"),
    ("qtasks_fast.results.async_result", "AsyncResult", "qtasks_fast.results:AsyncResult"),
    ("qtasks_fast.routers.sync_router", "SyncRouter", "qtasks_fast.routers:SyncRouter"),
    ("qtasks_fast.routers.async_router", "AsyncRouter", "qtasks_fast.routers:AsyncRouter"),
    ("qtasks_fast.events.sync_events", "SyncEvents", "qtasks_fast.events:SyncEvents"),
    ("qtasks_fast.events.async_events", "AsyncEvents", "qtasks_fast.events:AsyncEvents"),
    ("qtasks_fast.timers.sync_timer", "SyncTimer", "qtasks_fast.timers:SyncTimer"),
    ("qtasks_fast.timers.async_timer", "AsyncTimer", "qtasks_fast.timers:AsyncTimer"),
    ("qtasks_fast.contexts.sync_context", "SyncContext", "qtasks_fast.contexts:SyncContext"),
    ("qtasks_fast.contexts.async_context", "AsyncContext", "qtasks_fast.contexts:AsyncContext"),
    ("qtasks_fast.configs.sync_redisglobalconfig", "SyncRedisGlobalConfig",
     "qtasks_fast.configs:SyncRedisGlobalConfig"),
    ("qtasks_fast.configs.async_redisglobalconfig", "AsyncRedisGlobalConfig",
     "qtasks_fast.configs:AsyncRedisGlobalConfig"),
    ("qtasks_fast.stats.inspect.inspect", "InspectStats", "qtasks_fast.stats:InspectStats"),
    ("qtasks_fast.utils.registry", "shared_task", "qtasks_fast:shared_task"),
    ("qtasks_fast.plugins.retries.sync_retry", "SyncRetryPlugin", "qtasks_fast.plugins:SyncRetryPlugin"),
    ("qtasks_fast.plugins.retries.async_retry", "AsyncRetryPlugin", "qtasks_fast.plugins:AsyncRetryPlugin"),
    ("qtasks_fast.plugins.states.sync_state", "SyncStatePlugin", "qtasks_fast.plugins:SyncStatePlugin"),
    ("qtasks_fast.plugins.states.async_state", "AsyncStatePlugin", "qtasks_fast.plugins:AsyncStatePlugin"),
    ("qtasks_fast.plugins.states.fsm", "SyncState", "qtasks_fast.plugins:SyncState"),
    ("qtasks_fast.plugins.states.fsm", "AsyncState", "qtasks_fast.plugins:AsyncState"),
    ("qtasks_fast.plugins.pydantic.sync_pydantic", "SyncPydanticWrapperPlugin",
     "qtasks_fast.plugins:SyncPydanticWrapperPlugin"),
    ("qtasks_fast.plugins.pydantic.async_pydantic", "AsyncPydanticWrapperPlugin",
     "qtasks_fast.plugins:AsyncPydanticWrapperPlugin"),
    ("qtasks_fast.plugins.testing.sync_test", "SyncTestPlugin", "qtasks_fast.plugins:SyncTestPlugin"),
    ("qtasks_fast.plugins.testing.async_test", "AsyncTestPlugin", "qtasks_fast.plugins:AsyncTestPlugin"),
    ("qtasks_fast.plugins.depends.sync_depends", "SyncDependsPlugin", "qtasks_fast.plugins:SyncDependsPlugin"),
    ("qtasks_fast.plugins.depends.async_depends", "AsyncDependsPlugin", "qtasks_fast.plugins:AsyncDependsPlugin"),
    ("qtasks_fast.plugins.depends.class_depends", "Depends", "qtasks_fast:Depends"),
    ("qtasks_fast.plugins.depends.enums.scope", "ScopeEnum", "qtasks_fast.plugins.depends:ScopeEnum"),
    ("qtasks_fast.executors.base", "BaseTaskExecutor", "qtasks_fast.worker.executor:TaskExecutor"),
    ("qtasks_fast.plugins.grpc.sync_grpc", "SyncgRPCPlugin", "qtasks_fast.plugins.grpc:SyncgRPCPlugin"),
    ("qtasks_fast.plugins.grpc.async_grpc", "AsyncgRPCPlugin", "qtasks_fast.plugins.grpc:AsyncgRPCPlugin"),
    ("qtasks_fast.base.qtasks", "BaseQueueTasks", "qtasks_fast.app:BaseQueueTasks"),
]


def _package_name(path: str) -> object:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(("module", "name", "package_path"), SAME, ids=[f"{m}:{n}" for m, n, _ in SAME])
def test_qtasks_module_path_gives_the_package_object(module: str, name: str, package_path: str) -> None:
    got = getattr(importlib.import_module(module), name)
    assert got is _package_name(package_path)


def test_a_name_qtasks_has_not_stays_missing() -> None:
    """The aliases answer QTasks' paths only: a made-up module below them still fails to import."""
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("qtasks_fast.results.no_such_module")
    with pytest.raises(ImportError):
        exec("from qtasks_fast.results.sync_result import AsyncResult", {})  # QTasks' module has only SyncResult


def test_qtasks_example_imports_run_in_a_fresh_process(tmp_path: Path) -> None:
    """The import lines of QTasks' examples (examples/async/based_async_app.py, shared_tasks.py, the depends
    and states examples), ``qtasks`` -> ``qtasks_fast``, in a process that imported nothing before."""
    code = textwrap.dedent("""
        from qtasks_fast.asyncio.qtasks import QueueTasks
        from qtasks_fast.registries.async_task_decorator import AsyncTask
        from qtasks_fast.registries.sync_task_decorator import SyncTask
        from qtasks_fast.stats.async_stats import AsyncStats
        from qtasks_fast.plugins.states.fsm import AsyncState
        from qtasks_fast.plugins.depends.class_depends import Depends

        app = QueueTasks("paths", broker_url="memory://")

        @app.task(echo=True)
        async def hello(self: AsyncTask, name: str) -> str:
            return name

        assert isinstance(hello, AsyncTask) and isinstance(hello, SyncTask)
        print(type(AsyncStats(app=app)).__name__, AsyncState.__name__, Depends.__name__)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["AsyncStats", "AsyncState", "Depends"]
