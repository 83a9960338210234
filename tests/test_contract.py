"""The exported contract suite (qtasks_fast.testing.contract) against every built-in backend, Redis included,
declared the way a third-party backend author declares theirs: one class and one URL each."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import redis
from conftest import REDIS_URL, PrivateRedis, free_port

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


#: the port of TestRedisEvalsha's server, chosen at import: a contract class names its URL before any fixture runs
_EVALSHA_PORT = free_port()


@pytest.fixture(scope="class")
def evalsha_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Redis 7 whose FCALL and FUNCTION commands are renamed away: it answers 'unknown command' as Redis 6 does."""
    r = PrivateRedis(
        tmp_path_factory.mktemp("evalsha"), ["--rename-command", "FCALL", "", "--rename-command", "FUNCTION", ""]
    )
    r.port, r.url = _EVALSHA_PORT, f"redis://127.0.0.1:{_EVALSHA_PORT}/0"
    r.start()
    yield
    assert int(redis.Redis(port=_EVALSHA_PORT).info("commandstats")["cmdstat_evalsha"]["calls"]) > 0
    r.stop(signal.SIGKILL)


@pytest.mark.usefixtures("evalsha_server")
class TestRedisEvalsha(BackendContract):
    """The whole contract with redis.lua run as an EVALSHA script (issue 16), every op on the fallback path."""

    backend_url = f"redis://127.0.0.1:{_EVALSHA_PORT}/0"
