"""Shared by tests/test_exec_*.py: the producer copy of exec_app, a module-wide worker pool, polling."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from testkit import APPS, load_app_copy, wait_for

__all__ = ["pool_fixture", "producer", "record", "start_pool", "strings", "wait_for"]

APP = "exec_app"


def producer(app_name: str, redis_url: str) -> ModuleType:
    """A copy of tests/apps/exec_app.py bound to ``app_name`` (what the worker processes import)."""
    return load_app_copy(APPS / f"{APP}.py", f"{APP}_{app_name}", app_name, redis_url)


def start_pool(harness_cls: Any, tmp: Path, redis_url: str, processes: int = 2, *args: str) -> SimpleNamespace:
    """A pool of ``processes`` workers of exec_app under a fresh app name, and its producer."""
    name = f"t{uuid.uuid4().hex[:10]}"
    h = harness_cls(tmp, name)
    m = producer(name, redis_url)
    proc = h.start(redis_url, *args, processes=processes, app=APP)
    h.wait_ready(proc, processes)
    return SimpleNamespace(h=h, m=m, proc=proc, r=m.app.storage.conn.sync, name=name)


def pool_fixture(tmp_name: str, processes: int, *args: str) -> Any:
    """A module-scoped ``pool`` fixture: one pool (see start_pool) shared by a test file, closed after it."""

    @pytest.fixture(scope="module")
    def pool(tmp_path_factory: Any, redis_url: str) -> Any:
        from conftest import ProcessHarness

        p = start_pool(ProcessHarness, tmp_path_factory.mktemp(tmp_name), redis_url, processes, *args)
        yield p
        p.h.close()

    return pool


def record(p: Any, uuid: object, timeout: float = 20) -> Any:
    """The final record of ``uuid`` in pool ``p``; fail if it does not finish within ``timeout``."""
    rec = p.m.app.wait(uuid, timeout)
    assert rec is not None, f"task {uuid} did not finish in {timeout}s"
    return rec


def strings(values: list[bytes]) -> list[str]:
    return [v.decode() for v in values]
