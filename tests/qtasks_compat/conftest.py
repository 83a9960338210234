"""Fixtures of the QTasks-compat tests: the sync and the async app each served by a ``python app.py`` process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qtasks_compat.compat_server import SERVERS, Server, serve


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(SERVERS / "app_sync.py", tmp_path_factory.mktemp("sync") / "server.log")


@pytest.fixture(scope="module")
def async_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(SERVERS / "app_async.py", tmp_path_factory.mktemp("async") / "server.log")
