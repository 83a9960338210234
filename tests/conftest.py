"""Shared fixtures: a reachable Redis, private redis-servers on free ports, and the CLI in a subprocess.

Tests never touch the process behind 127.0.0.1:6379; tests that stop or restart
Redis start their own ``redis-server`` with ``private_redis``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"
REDIS_URL = os.environ.get("QTASKS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The environment beats the code for every setting (README "Configuration"): a QTASKS_BROKER_URL or
# QTASKS_SQLITE_PATH exported in the developer's shell would move every test app off the broker its
# test chose. Tests that need one set it themselves.
for _name in ("QTASKS_BROKER_URL", "QTASKS_SQLITE_PATH"):
    os.environ.pop(_name, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_redis(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ensure_local_redis(url: str = REDIS_URL) -> None:
    """Start redis-server on 127.0.0.1:6379 when nothing answers there (a bare machine, CI)."""
    try:
        redis.Redis.from_url(url).ping()
        return
    except redis.ConnectionError:
        if url != "redis://127.0.0.1:6379/0":
            pytest.fail(f"no Redis at {url} (QTASKS_TEST_REDIS_URL); start it first")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("no Redis on 127.0.0.1:6379 and no redis-server binary to start one: apt-get install redis-server")
    subprocess.run([binary, "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "",
                    "--appendonly", "no"], check=True, stdout=subprocess.DEVNULL)
    wait_redis(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    ensure_local_redis()
    return REDIS_URL


@pytest.fixture(params=["redis", "sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A broker URL of each built-in backend: the shared Redis, a fresh SQLite file, memory://."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/q.sqlite3"
    return "memory://"


@pytest.fixture
def app_name() -> str:
    """A unique app name per test, so tests share a Redis without seeing each other's keys."""
    return f"t{uuid.uuid4().hex[:10]}"


class PrivateRedis:
    """A redis-server of our own on a free port (AOF on), that a test may stop and restart."""

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_redis(self.url if "--requirepass" not in self.extra else self.auth_url())

    def auth_url(self) -> str:
        pw = self.extra[self.extra.index("--requirepass") + 1]
        return f"redis://default:{pw}@127.0.0.1:{self.port}/0"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop(signal.SIGKILL)


def cli_env(broker_url: str | None, app_name: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("QTASKS_BROKER_URL", None)
    if broker_url:
        env["QTASKS_BROKER_URL"] = broker_url
    env["TEST_APP_NAME"] = app_name
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), str(ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str], cwd: Path | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m qtasks_fast <args>`` in a subprocess (stderr to ``log`` when given)."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen([sys.executable, "-m", "qtasks_fast", *args], env=env, cwd=cwd or APPS,
                            stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)


def stop_cli(proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


# --------------------------------------------------------------------------------------------------
# Fixtures of the process-level tests (tests/test_process_*.py): real Redis, the CLI in subprocesses.

AUTH_PASSWORD = "s3cr3t-Pa55w0rd-QTF"
FINAL_STATUSES = {b"success", b"error", b"cancel"}


@pytest.fixture
def private_redis_auth(tmp_path: Path) -> Iterator[PrivateRedis]:
    """Like ``private_redis``, but the server requires a password (``auth_url()`` carries it)."""
    r = PrivateRedis(tmp_path, ["--requirepass", AUTH_PASSWORD])
    r.start()
    yield r
    r.stop(signal.SIGKILL)


class ProcessHarness:
    """Starts worker pools (the CLI) and producer apps for one test; kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path, app_name: str) -> None:
        self.tmp_path = tmp_path
        self.app_name = app_name
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self._apps = 0

    # ----------------------------------------------------------- producers
    def producer(self, broker_url: str, **env: str) -> object:
        """A fresh copy of tests/apps/mixed_app.py bound to this test's app name and ``broker_url``.

        ``env`` (e.g. ``QTASKS_MAX_PAYLOAD="2000"``) is visible while the module builds its config.
        """
        import importlib.util
        from unittest import mock

        self._apps += 1
        spec = importlib.util.spec_from_file_location(f"mixed_app_{self.app_name}_{self._apps}",
                                                      APPS / "mixed_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        with mock.patch.dict(os.environ, {"TEST_APP_NAME": self.app_name, "QTASKS_BROKER_URL": broker_url, **env}):
            spec.loader.exec_module(module)
        return module

    # ------------------------------------------------------------- workers
    def start(self, broker_url: str | None, *args: str, processes: int = 2, worker_id: str = "W",
              env: dict[str, str] | None = None, app: str = "mixed_app") -> subprocess.Popen[bytes]:
        """``python -m qtasks_fast -A <app> run --processes N --worker-id ID <args>``, output to a log file."""
        log = self.tmp_path / f"cli-{len(self.procs)}.log"
        cmd = ["-A", app, "run", "--processes", str(processes), "--worker-id", worker_id, *args]
        proc = start_cli(cmd, cli_env(broker_url, self.app_name, **(env or {})), log=log)
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        for p, path in self.procs:
            if p is proc:
                return path.read_text(errors="replace")
        raise KeyError(proc)

    def wait_log(self, proc: subprocess.Popen[bytes], text: str, count: int = 1, timeout: float = 20) -> str:
        """Wait until ``text`` appears ``count`` times in the pool's log; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.log(proc)
            if out.count(text) >= count:
                return out
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{text!r} x{count} not in the log (exit code {proc.poll()}):\n{out[-5000:]}")
            time.sleep(0.05)

    def wait_ready(self, proc: subprocess.Popen[bytes], processes: int = 2, timeout: float = 20) -> None:
        self.wait_log(proc, " serving queues ", processes, timeout)

    @staticmethod
    def children(proc: subprocess.Popen[bytes]) -> list:  # of psutil.Process
        import psutil

        try:
            return psutil.Process(proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def close(self) -> None:
        import psutil

        for proc, _ in self.procs:
            kids = self.children(proc)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for k in kids:  # orphans of a supervisor that died first
                try:
                    k.kill()
                except psutil.NoSuchProcess:
                    pass

    # ------------------------------------------------------------- records
    def record_key(self, uuid: object, queue: str = "default") -> str:
        return f"qtf:{{{self.app_name}:{queue}}}:t:{uuid}"

    def stream_key(self, prio: int = 0, queue: str = "default") -> str:
        return f"qtf:{{{self.app_name}:{queue}}}:s:{prio}"

    def dlq_key(self, queue: str = "default") -> str:
        return f"qtf:{{{self.app_name}:{queue}}}:dlq"

    def statuses(self, client: redis.Redis, uuids: list[str]) -> list[bytes | None]:
        """Status of each task as ``get`` reports it (new, process, or the final one; None if unknown)."""
        from qtasks_fast.backends.redis.storage import parse_record

        out: list[bytes | None] = []
        for fields in self._lookup(client, uuids):
            task = parse_record(fields, "default")
            out.append(task.status.encode() if task else None)
        return out

    def _lookup(self, client: redis.Redis, uuids: list[str]) -> list[dict[bytes, bytes]]:
        """The Lua 'get' of each uuid, pipelined (what ``app.get`` reads, without one round trip each)."""
        from qtasks_fast.backends.redis.broker import LUA

        script = client.register_script(LUA)
        prefix = f"qtf:{{{self.app_name}:default}}"
        out: list[dict[bytes, bytes]] = []
        for i in range(0, len(uuids), 2000):
            pipe = client.pipeline(transaction=False)
            for u in uuids[i:i + 2000]:
                script(keys=[prefix], args=["get", "1", self.app_name, u], client=pipe)
            out += [dict(zip(flat[::2], flat[1::2])) if flat else {} for flat in pipe.execute()]
        return out

    def finished(self, client: redis.Redis, status: str = "success") -> int:
        """How many tasks of this app finished with ``status`` (the P:count counters)."""
        return int(client.hget(f"qtf:{{{self.app_name}:default}}:count", status) or 0)

    def wait_final(self, client: redis.Redis, uuids: list[str], timeout: float,
                   proc: subprocess.Popen[bytes] | None = None) -> None:
        """Poll until every record is final; on timeout fail with a status histogram (and the pool's log)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.statuses(client, uuids)
            if all(s in FINAL_STATUSES for s in st):
                return
            if time.monotonic() > deadline:
                hist: dict[object, int] = {}
                for s in st:
                    hist[s] = hist.get(s, 0) + 1
                log = self.log(proc)[-5000:] if proc is not None else ""
                pytest.fail(f"not all {len(uuids)} tasks finished in {timeout}s: {hist}\n{log}")
            time.sleep(0.1)

    def records(self, app: object, uuids: list[str]) -> dict:  # uuid -> Task
        """Records as the producer's ``get`` returns them (``decode=`` applied), fetched in pipelines."""
        from qtasks_fast.backends.redis.storage import parse_record
        from qtasks_fast.task import decode_result

        out = {}
        for u, fields in zip(uuids, self._lookup(app.storage.conn.sync, uuids), strict=True):  # type: ignore[attr-defined]
            task = decode_result(parse_record(fields, "default"), app.tasks)  # type: ignore[attr-defined]
            assert task is not None, f"record of {u} is missing"
            out[u] = task
        return out


@pytest.fixture
def harness(tmp_path: Path, app_name: str) -> Iterator[ProcessHarness]:
    h = ProcessHarness(tmp_path, app_name)
    yield h
    h.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write to many SQLite files no worker ever reads: the producer's at-exit warning about them
    (qtasks_fast.backends.sqlite.seen) is not news at the end of a test run."""
    from qtasks_fast.backends.sqlite import seen as sqlite_seen

    sqlite_seen._pending.clear()
