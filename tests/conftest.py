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
from typing import Any

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


#: the PostgreSQL of the tests: the shared server (trust auth); every test run uses a schema of its own, dropped
#: at the end of the session (``pg_schema``), so runs never see each other's tables
PG_DSN = os.environ.get("QTASKS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_SCHEMA = f"qtf_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
PG_URL = f"{PG_DSN}?schema={PG_SCHEMA}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The test run's PostgreSQL URL (its own schema, dropped afterwards); fails clearly when no server answers."""
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
        finally:
            await conn.close()

    try:
        asyncio.run(drop())
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"no PostgreSQL at {PG_DSN} (QTASKS_TEST_PG_URL): {exc}; .ci/run starts one")
    yield PG_URL
    asyncio.run(drop())


class PrivatePostgres:
    """A PostgreSQL server of our own on a free port (``initdb`` + ``pg_ctl`` in a temporary directory, trust
    auth), that a test may crash and restart; never the shared one. As root the server runs as user postgres
    (initdb refuses root)."""

    def __init__(self) -> None:
        import glob
        import tempfile

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
        if not bins:
            pytest.fail("no PostgreSQL binaries in /usr/lib/postgresql: apt-get install postgresql")
        self.bin = Path(bins[-1])
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="qtasks-pg-"))
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, -1)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self._pg("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        subprocess.run([*self.run_as, str(self.bin / tool), *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "pg.log"), "-w", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` is a crash: no checkpoint, connections cut, recovery at the next start."""
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-w", "-m", mode, "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.remove()


@pytest.fixture(params=["redis", "sqlite", "memory", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A broker URL of each bundled backend: the shared Redis, a fresh SQLite file, memory://, the test run's
    PostgreSQL schema."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
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


# --------------------------------------------------------------------------------------------------
# Test tiers (README "Tests"). The default run (pyproject addopts) is the fast tier: the memory backend and
# workers in this process. These rules mark the rest, so no test needs a hand-written marker to land in its
# tier: ``integration`` for a real backend or a process of its own (Redis, the shared or a private server;
# SQLite files; the CLI and worker pools in subprocesses), ``slow`` for what takes long whatever the backend
# (benchmarks, packaging, the peers). ``chaos`` stays the chaos tier's own marker (tests/chaos). A test that the
# rules leave in the fast tier and that starts a process fails, saying which rule to add
# (``pytest_runtest_protocol`` below).

#: fixtures that reach a Redis server (the shared one, or a private one they start) or serve an app in a process
INTEGRATION_FIXTURES = {"redis_url", "private_redis", "private_redis_auth", "sync_server", "async_server", "pg_url",
                        "private_pg"}
#: parameters that pick a backend other than memory (the ``url`` fixture's "redis"/"sqlite", or a URL)
INTEGRATION_URLS = ("redis", "sqlite", "postgres", "redis://", "rediss://", "sqlite://", "unix://", "postgresql://")
#: modules about processes or servers of their own (the CLI, a private or TLS redis-server, SQLite files shared
#: between processes or locked by another connection)
INTEGRATION_MODULES = {
    "test_architecture", "test_backend_sqlite", "test_cli_bad_input", "test_cli_shape", "test_django_autodiscover",
    "test_embedded_location", "test_producer_timeouts", "test_redis_full", "test_redis_functions", "test_run_forever",
    "test_secrets",
    "test_module_paths", "test_sqlite_lock", "test_tls", "test_postgres_app", "test_web_browser", "test_web_process",
    "test_web_schemathesis", "test_grpc_gateway",
}
#: single tests (``module::function``) that start processes in otherwise fast modules (the CLI, a helper script,
#: tasks of ``executor="process"``)
INTEGRATION_TESTS = {
    "test_backend_registry::test_a_third_party_entry_point_serves_its_scheme",
    "test_backend_registry::test_without_the_distribution_the_scheme_is_unknown",
    "test_cli_query::test_bad_flags_are_one_line_and_exit_2",
    "test_control_input::test_dlq_list_shows_non_utf8_fields_on_sqlite",
    "test_core::test_the_installed_core_is_compiled_unless_pure_python_is_asked_for",
    "test_deliveries::test_an_sqlite_file_without_the_column_opens_and_records_deliveries",
    "test_deliveries::test_status_shows_the_deliveries",
    "test_delete_finished::test_a_fleet_start_deletes_records_finished_before_it",
    "test_embedded::test_quickstart_runs_two_processes_on_sqlite",
    "test_inspect_fleet::test_inspect_of_an_unreachable_broker_shows_the_app_and_says_why",
    "test_logger::test_a_producer_prints_in_the_loggers_format_and_level",
    "test_logger::test_a_worker_logs_in_the_loggers_format_and_level",
    "test_logs_config::test_a_worker_logs_at_the_config_level_in_the_config_format",
    "test_plugin_error_trigger::test_plugin_error_is_recovered_alike_in_a_process_and_a_thread",
    "test_pydantic_results::test_a_model_returned_from_a_process_task_is_stored_as_its_data",
    "test_big_int_results::test_wide_int_result_from_a_process_task",
    "test_settings::test_info_shows_each_setting_and_where_it_came_from",
    "test_settings::test_info_with_a_bad_environment_value_is_one_line",
    "test_settings::test_info_with_an_environment_value_out_of_range_is_one_line",
    "test_testing::test_feed_and_process_tasks_run_under_a_worker_thread_on_memory",
    "test_testing::test_readme_testing_block_passes_as_written",
    "test_tiers::test_the_default_run_is_the_fast_tier_and_the_readme_command_runs_every_tier_but_chaos",
}
#: modules that take long whatever the backend: benchmarks, packaging, the peers, property-based fuzzing, a
#: gRPC server per test, the Node.js gRPC client (npm ci), leases left to run out, the contract suite run five
#: times by a "third party"
SLOW_MODULES = {"test_bench_grpc", "test_bench_sqlite", "test_benchmarks_smoke", "test_contract_third_party",
                "test_fuzz_decode", "test_grpc_node", "test_grpc_plugin", "test_lease_lost", "test_packaging",
                "test_peers_smoke"}


def _tier(item: pytest.Item) -> str | None:
    """``"integration"``, ``"slow"`` or None (the fast tier) for one collected test."""
    module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) and item.module else ""
    if module in SLOW_MODULES:
        return "slow"
    cls = getattr(item, "cls", None)
    backend_url = getattr(cls, "backend_url", None)
    if isinstance(backend_url, str) and backend_url:  # a class of the contract suite (qtasks_fast.testing.contract)
        return None if backend_url.startswith("memory://") else "integration"
    names = set(getattr(item, "fixturenames", ()))
    if names & INTEGRATION_FIXTURES or "harness" in names:  # harness: ProcessHarness, worker pools of the CLI
        return "integration"
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    if any(isinstance(p, str) and (p in INTEGRATION_URLS or p.startswith(INTEGRATION_URLS[2:])) for p in params):
        return "integration"
    if module in INTEGRATION_MODULES or f"{module}::{getattr(item, 'originalname', item.name)}" in INTEGRATION_TESTS:
        return "integration"
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("chaos") or item.get_closest_marker("slow") or item.get_closest_marker(
                "integration"):
            continue
        tier = _tier(item)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A test of the fast tier that starts a process (in its body or in any fixture it sets up, whatever the
    fixture's scope) fails, naming the rule to add: the tiers stay honest."""
    if any(item.get_closest_marker(m) for m in ("integration", "slow", "chaos")):
        yield
        return
    real = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen[bytes], args: Any, *a: Any, **kw: Any) -> None:
        raise AssertionError(f"{item.nodeid} starts a process ({args!r:.80}): list its module in INTEGRATION_MODULES "
                             "or the test in INTEGRATION_TESTS (tests/conftest.py)")

    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = real  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Tests write to many SQLite files no worker ever reads: the producer's at-exit warning about them
    (qtasks_fast.backends.sqlite.seen) is not news at the end of a test run."""
    from qtasks_fast.backends.sqlite import seen as sqlite_seen

    sqlite_seen._pending.clear()
