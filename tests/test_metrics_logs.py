"""Metrics and log capture, as middlewares, with real worker processes against a real Redis.

What a user relies on: ``app.add_middleware(LogCapture)`` stores what a task logged (its own
logger and the standard logging module, from async and thread tasks, never another task's lines)
with the task, capped (the first and the last lines of a run), readable through ``app.get_logs``
(sync and async clients) and ``qtasks-fast logs UUID``, expiring with the record, on Redis, SQLite
and memory; logging outside tasks behaves as before. ``app.add_middleware(Metrics, port=...)`` serves per-task counts by
outcome, retries and durations on 127.0.0.1, summed over every worker process when
``PROMETHEUS_MULTIPROC_DIR`` is set; without the extra, a clear ImportError.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import ProcessHarness, cli_env, free_port
from test_plugins import load_app, wait_for

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.middlewares import LogCapture, Metrics
from qtasks_fast.testing import WorkerThread


@pytest.fixture(scope="module")
def pool(tmp_path_factory: Any, redis_url: str) -> Any:
    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(Path(tmp_path_factory.mktemp("logs")), name)
    m = load_app(name, redis_url)
    proc = h.start(redis_url, processes=1, app="plugins_app")
    h.wait_ready(proc, 1)
    yield h, m, proc, redis_url
    h.close()


def cli(name: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    from conftest import APPS

    return subprocess.run([sys.executable, "-m", "qtasks_fast", "-A", "plugins_app", *args],
                          env=cli_env(url, name), cwd=APPS, capture_output=True, text=True, timeout=60)


# ------------------------------------------------------------------------------------------ logs
def test_a_thread_task_logs_are_stored_with_it_and_expire_with_it(pool):
    h, m, proc, url = pool
    rec = m.chatty.add_task(3, timeout=20)
    assert rec is not None and rec.status == "success"
    lines = m.app.get_logs(rec.uuid)
    assert [line.split(" ", 2)[2] for line in lines] == [  # after the timestamp: level, logger, message
        "INFO plugins_app.work: step 1 of 3", "INFO plugins_app.work: step 2 of 3",
        "INFO plugins_app.work: step 3 of 3", "WARNING root: root warning from chatty(3)"]
    assert asyncio.run(AsyncQueueTasks(m.NAME, broker_url=url).get_logs(rec.uuid)) == lines
    ttl = m.app.storage.conn.sync.pttl(f"qtf:{{{m.NAME}:default}}:lg:{rec.uuid}")
    assert 0 < ttl <= m.app.config.result_ttl * 1000
    # the root warning still reaches stderr as Python prints it without handlers (the worker's log file)
    h.wait_log(proc, "root warning from chatty(3)")


def test_lines_beyond_the_cap_keep_the_first_and_the_last_and_say_so(pool):
    h, m, proc, url = pool
    rec = m.chatty.add_task(30, timeout=20)  # 31 lines; the app keeps max_lines=20: the first 10, the last 10
    lines = m.app.get_logs(rec.uuid)
    assert len(lines) == 21 and lines[10].startswith("[11 line(s) dropped here"), lines[9:12]
    assert lines[0].endswith("step 1 of 30") and lines[9].endswith("step 10 of 30")
    assert lines[11].endswith("step 22 of 30") and lines[-1].endswith("root warning from chatty(30)")


def test_a_failing_task_keeps_its_lines(pool):
    h, m, proc, url = pool
    rec = m.chatty.add_task(2, fail=True, timeout=20)
    assert rec is not None and rec.status == "error" and "chatty failed after 2 steps" in rec.traceback
    lines = m.app.get_logs(rec.uuid)
    assert [line.rsplit(": ", 1)[1] for line in lines[:3]] == ["step 1 of 2", "step 2 of 2",
                                                               "root warning from chatty(2)"]
    # and the worker's own line about the failure, naming the task
    assert len(lines) == 4 and lines[3].split(" ", 2)[2] == \
        f"WARNING qtasks_fast.worker: task chatty[{rec.uuid}] error: ValueError: chatty failed after 2 steps"


def test_concurrent_tasks_never_get_each_others_lines(pool):
    h, m, proc, url = pool
    gate = f"gate:{uuid.uuid4().hex}"
    a, b = m.interleaved.add_task("alpha", gate), m.interleaved.add_task("beta", gate)
    for t, tag in ((a, "alpha"), (b, "beta")):
        done = m.app.wait(t.uuid, 20)
        assert done is not None and done.returning == tag, done
        msgs = [line.rsplit(": ", 1)[1] for line in m.app.get_logs(t.uuid)]
        assert msgs == [f"{tag} first", f"{tag} via stdlib", f"{tag} last"], msgs


def test_cli_logs_json_unknown_and_empty(pool):
    h, m, proc, url = pool
    rec = m.chatty.add_task(1, timeout=20)
    out = cli(m.NAME, url, "logs", str(rec.uuid), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == m.app.get_logs(rec.uuid) and len(json.loads(out.stdout)) == 2
    plain = cli(m.NAME, url, "logs", str(rec.uuid))
    assert plain.returncode == 0 and plain.stdout.splitlines() == m.app.get_logs(rec.uuid)
    quiet = m.quiet.add_task(timeout=20)
    empty = cli(m.NAME, url, "logs", str(quiet.uuid), "--json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == [] and m.app.get_logs(quiet.uuid) == []
    missing = cli(m.NAME, url, "logs", str(uuid.uuid4()))
    assert missing.returncode == 1 and "unknown or expired" in missing.stderr


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: Any, redis_url: str) -> Any:
    """A worker serving logs_app with, for every task, Outer (added before LogCapture), LogCapture, Inner."""
    from apps.testkit import load_app_copy
    from conftest import APPS

    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(Path(tmp_path_factory.mktemp("hooked")), name)
    m = load_app_copy(APPS / "logs_app.py", f"logs_app_{name}", name, redis_url, LOGS_APP_CAPTURE="1")
    proc = h.start(redis_url, processes=1, worker_id="L", app="logs_app", env={"LOGS_APP_CAPTURE": "1"})
    h.wait_ready(proc, 1)
    yield h, m, proc
    h.close()


def messages(lines: list[str]) -> list[str]:
    """``LEVEL logger: message`` of captured lines (after the timestamp)."""
    return [line.split(" ", 2)[2] for line in lines]


def test_capture_takes_every_logger_that_reaches_the_root_from_every_kind_of_task(hooked):
    h, m, proc = hooked
    free = "INFO logs_app.free: "
    cases = {
        m.in_thread: [f"{free}T from a pool thread", "INFO root: T via logging.info"],
        m.inline: [f"{free}T inline on the loop"],
        m.in_async: [f"{free}T before await", f"{free}T from to_thread",
                     "WARNING logs_app.free.child: T from a child logger"],
        m.no_await: [f"{free}T without suspending"],
        m.timed: [f"{free}T with max_time"],
        m.in_process: [],  # a child process's lines go to the worker's output, not to the capture
    }
    for task, lines in cases.items():
        rec = task.add_task("T", timeout=30)
        assert rec is not None and rec.status == "success", (task.name, rec)
        # Inner was added after LogCapture: its hooks run inside the capture; Outer's (added before) do not
        assert messages(m.app.get_logs(rec.uuid)) == [f"{free}inner before {task.name}", *lines,
                                                     f"{free}inner after success"], task.name


def test_two_concurrent_async_tasks_logging_interleaved_lines_each_get_only_their_own(hooked):
    h, m, proc = hooked
    gate = uuid.uuid4().hex
    a, b = m.pair.add_task("alpha", gate), m.pair.add_task("beta", gate)
    out = {}
    for t, tag in ((a, "alpha"), (b, "beta")):
        done = m.app.wait(t.uuid, 30)
        assert done is not None and done.returning == tag, done
        out[tag] = [line.rsplit(": ", 1)[1] for line in m.app.get_logs(t.uuid)]
    # they did interleave: both logged "first" before either logged "last"
    h.wait_log(proc, "alpha last")
    log = h.wait_log(proc, "beta last")
    assert max(log.index("alpha first"), log.index("beta first")) < min(log.index("alpha last"),
                                                                         log.index("beta last"))
    for tag in ("alpha", "beta"):
        assert out[tag] == ["inner before pair", f"{tag} first", f"{tag} last", "inner after success"], out


def test_a_middleware_added_before_log_capture_keeps_its_hook_order_and_logs_as_the_task(hooked):
    h, m, proc = hooked
    rec = m.in_thread.add_task("order", timeout=30)
    assert rec is not None and rec.status == "success"
    out = h.wait_log(proc, f"in_thread[{rec.uuid}]] outer after success")
    mine = [ln.split("]] ", 1)[1] for ln in out.splitlines() if f"[L-0 in_thread[{rec.uuid}]] " in ln]
    # Outer wraps LogCapture, which wraps Inner; every line names the worker and the task
    assert mine == ["outer before in_thread", "inner before in_thread", "order from a pool thread",
                    "order via logging.info", "inner after success", "outer after success"], mine
    captured = m.app.get_logs(rec.uuid)
    assert not [ln for ln in captured if "outer" in ln], captured


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_log_capture_on_the_embedded_backends(tmp_path, backend):
    url = f"sqlite:///{tmp_path}/q.sqlite3" if backend == "sqlite" else "memory://"
    app = QueueTasks(f"logs-{backend}", broker_url=url)
    app.add_middleware(LogCapture)

    @app.task(echo=True)
    def job(self: Any, n: int) -> int:
        self.ctx.get_logger().warning("job %d says hi", n)
        return n

    with WorkerThread(app):
        rec = job.add_task(7, timeout=20)
        assert rec is not None and rec.status == "success", rec
    assert [line.split(" ", 2)[2] for line in app.get_logs(rec.uuid)] == ["WARNING qtasks_fast.task: job 7 says hi"]
    storage = app.storage
    storage.result_ttl = 0.05
    asyncio.run(storage.append_logs("u1", "default", ["a", "b"]))
    asyncio.run(storage.append_logs("u1", "default", ["c"]))
    assert storage.get_logs_sync("u1", "default") == ["a", "b", "c"]
    assert storage.get_logs_sync("u1", "other") == []
    time.sleep(0.1)  # past result_ttl
    assert storage.get_logs_sync("u1", "default") == []


# --------------------------------------------------------------------------------------- metrics
def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            k = (s.name, tuple(sorted((n, v) for n, v in s.labels.items() if n in ("task", "status", "le"))))
            out[k] = out.get(k, 0.0) + s.value
    return out


def test_metrics_of_every_worker_process_served_once(tmp_path, redis_url):
    name = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    mp = tmp_path / "prom"
    mp.mkdir()
    h = ProcessHarness(tmp_path, name)
    try:
        m = load_app(name, redis_url)
        proc = h.start(redis_url, "--concurrency", "1", processes=2, app="plugins_app",
                       env={"QTF_METRICS_PORT": str(port), "PROMETHEUS_MULTIPROC_DIR": str(mp)})
        h.wait_ready(proc, 2)
        h.wait_log(proc, f"serving metrics on http://127.0.0.1:{port}/metrics (multiprocess)")
        naps = [m.nap.add_task(0.2) for _ in range(6)]
        boom = m.boom.add_task(1)  # retry=1: two errors, one retry
        done = [m.app.wait(t.uuid, 30) for t in naps]
        assert all(d is not None and d.status == "success" for d in done)
        assert len({d.worker_id for d in done}) == 2  # both processes ran some: the sum below spans them
        assert m.app.wait(boom.uuid, 30).status == "error"

        def counts() -> Any:
            got = scrape(port)
            if got.get(("qtasks_tasks_total", (("status", "error"), ("task", "boom")))) == 2.0:
                return got
            return None

        got = wait_for(counts, 10, "metrics of the boom retry")
        assert got[("qtasks_tasks_total", (("status", "success"), ("task", "nap")))] == 6.0
        assert got[("qtasks_task_retries_total", (("task", "boom"),))] == 1.0
        assert got[("qtasks_task_duration_seconds_count", (("task", "nap"),))] == 6.0
        assert got[("qtasks_task_duration_seconds_bucket", (("le", "0.1"), ("task", "nap")))] == 0.0
        assert got[("qtasks_task_duration_seconds_bucket", (("le", "0.25"), ("task", "nap")))] == 6.0
        assert 1.2 <= got[("qtasks_task_duration_seconds_sum", (("task", "nap"),))] < 3.0
        # the broker's memory, served once for the fleet (one Redis), read at scrape time
        used = redis.Redis.from_url(redis_url).info("memory")["used_memory"]
        assert 0.5 * used < got[("qtasks_broker_memory_used_bytes", ())] < 2 * used
        assert got[("qtasks_broker_memory_max_bytes", ())] == \
            int(redis.Redis.from_url(redis_url).config_get("maxmemory")["maxmemory"])
    finally:
        h.close()


def test_metrics_without_the_extra_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'qtasks-fast\[metrics\]'"):
        Metrics()


def test_two_metrics_in_one_process_share_their_collectors():
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    a, b = Metrics(registry=reg), Metrics(registry=reg)  # prometheus_client alone would refuse the second
    assert a.tasks is b.tasks and a.duration is b.duration


def test_broker_memory_gauges_are_read_at_most_once_per_interval(redis_url, app_name):
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry()
    app = QueueTasks(app_name, broker_url=redis_url)
    metrics = app.add_middleware(Metrics, registry=reg, memory_interval=3600)
    assert metrics.memory is not None
    used = reg.get_sample_value("qtasks_broker_memory_used_bytes")
    assert used is not None and used > 0
    assert reg.get_sample_value("qtasks_broker_memory_max_bytes") is not None
    calls: list[int] = []
    real = app.broker.memory_stats  # type: ignore[attr-defined]
    app.broker.memory_stats = lambda: calls.append(1) or real()  # type: ignore[attr-defined]
    for _ in range(5):  # scrapes within the interval: the cached value, Redis is not asked
        assert reg.get_sample_value("qtasks_broker_memory_used_bytes") == used
    assert calls == []

    other = CollectorRegistry()
    QueueTasks("m", broker_url="memory://").add_middleware(Metrics, registry=other)
    assert other.get_sample_value("qtasks_broker_memory_used_bytes") is None  # no memory figures to export
