"""The exported contract suite (qtasks_fast.testing.contract) against every built-in backend, Redis included,
declared the way a third-party backend author declares theirs: one class and one URL each."""

from __future__ import annotations

from conftest import REDIS_URL, ensure_local_redis

from qtasks_fast.testing.contract import BackendContract

ensure_local_redis()


class TestMemory(BackendContract):
    backend_url = "memory://"


class TestSqlite(BackendContract):
    backend_url = "sqlite:///{tmp_path}/contract.sqlite3"


class TestRedis(BackendContract):
    backend_url = REDIS_URL
