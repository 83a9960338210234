"""Helpers shared by the test apps under tests/apps and by the tests that drive them.

Two import names reach this file: ``testkit`` (worker processes and app copies have tests/apps
on sys.path, see conftest.cli_env) and ``apps.testkit`` (test files, which have tests/ on
sys.path). Nothing here keeps state that the two module objects would need to share.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import redis
import redis.asyncio as aioredis

APPS = Path(__file__).resolve().parent


class RedisTraces:
    """Where a test app leaves traces a test reads from outside the workers: keys ``<app name>:<suffix>``.

    ``rc()`` is an async client of the running loop (a worker process has one loop, a test may
    run several); ``sc()`` one sync client, for sync tasks and sync hooks.
    """

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self._clients: dict[object, aioredis.Redis] = {}
        self._sync: list[redis.Redis] = []

    def key(self, suffix: str) -> str:
        return f"{self.name}:{suffix}"

    def rc(self) -> aioredis.Redis:
        """An async client of the running loop (a worker process has one loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = aioredis.Redis.from_url(self.url)
        return self._clients[loop]

    def sc(self) -> redis.Redis:
        if not self._sync:
            self._sync.append(redis.Redis.from_url(self.url))
        return self._sync[0]


def load_app_copy(path: Path, module_name: str, app_name: str, broker_url: str, **env: str) -> ModuleType:
    """A fresh module object of the app file ``path``, bound to ``app_name`` and ``broker_url``.

    It is what the worker processes import, built in the test process so a test can send tasks
    and read results through the same app; ``env`` is visible while the module runs.
    """
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))  # the apps import testkit, as they do in the workers
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, {"TEST_APP_NAME": app_name, "QTASKS_BROKER_URL": broker_url, **env}):
        spec.loader.exec_module(module)
    return module


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)


def forget_shared_tasks(before: set[str]) -> None:
    """Undo the ``shared_task`` registrations made since ``before``: shared tasks join every app.

    Without it, a test's shared tasks would show up in the apps of the tests after it.
    """
    from qtasks_fast import router

    for name in set(router._shared) - before:
        del router._shared[name]
        for app in list(router._apps):
            if name in app._shared_names:
                app._shared_names.discard(name)
                app.tasks.pop(name, None)
