"""Shared by tests/test_exec_*.py: the producer copy of exec_app, a module-wide worker pool, polling."""

from __future__ import annotations

import importlib.util
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock

APPS = Path(__file__).resolve().parent
APP = "exec_app"


def producer(app_name: str, redis_url: str) -> ModuleType:
    """A copy of tests/apps/exec_app.py bound to ``app_name`` (what the worker processes import)."""
    spec = importlib.util.spec_from_file_location(f"{APP}_{app_name}", APPS / f"{APP}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, {"TEST_APP_NAME": app_name, "QTASKS_BROKER_URL": redis_url}):
        spec.loader.exec_module(module)
    return module


def start_pool(harness_cls: Any, tmp: Path, redis_url: str, processes: int = 2, *args: str) -> SimpleNamespace:
    """A pool of ``processes`` workers of exec_app under a fresh app name, and its producer."""
    name = f"t{uuid.uuid4().hex[:10]}"
    h = harness_cls(tmp, name)
    m = producer(name, redis_url)
    proc = h.start(redis_url, *args, processes=processes, app=APP)
    h.wait_ready(proc, processes)
    return SimpleNamespace(h=h, m=m, proc=proc, r=m.app.storage.conn.sync, name=name)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def strings(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]
