"""The exported contract suite (qtasks_fast.testing.contract) against every built-in backend, Redis included,
declared the way a third-party backend author declares theirs: one class and one URL each."""

from __future__ import annotations

import pytest
from conftest import REDIS_URL

from qtasks_fast.testing.contract import BackendContract


class TestMemory(BackendContract):
    backend_url = "memory://"


class TestSqlite(BackendContract):
    backend_url = "sqlite:///{tmp_path}/contract.sqlite3"


class TestRedis(BackendContract):
    backend_url = REDIS_URL

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        """Starts redis-server when nothing answers (conftest), for this class only: the memory tier needs none."""
