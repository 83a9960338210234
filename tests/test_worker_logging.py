"""What a worker prints (issue 10, item 10), read from the output of real worker processes.

What an operator relies on: a plain ``logging.info(...)`` or ``logging.getLogger(__name__).info(...)``
in task code shows in the worker's output with a timestamp, the worker id and the task (name and id),
whatever kind of task it is (thread, inline, async, ``max_time``, ``executor="process"``), without the
app configuring anything; an app that configured logging itself keeps its handlers, level and format.
At INFO the worker prints one summary line per interval and a line per failure, never a line per success.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from apps.testkit import load_app_copy, wait_for
from conftest import APPS, ProcessHarness

from qtasks_fast.log import LOGGER_NAME, current_task, setup_logging
from qtasks_fast.schemas import Envelope
from qtasks_fast.worker.summary import Summary

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
SUMMARY = re.compile(r"^" + STAMP + r" INFO qtasks_fast\.worker \[L-0\] (\d+) tasks in \d+s \([\d.]+/s\): "
                     r"(\d+) ok, (\d+) failed, (\d+) retried, (\d+) cancelled$", re.M)


def load(name: str, url: str, **env: str) -> Any:
    return load_app_copy(APPS / "logs_app.py", f"logs_app_{name}", name, url, **env)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: Any, redis_url: str) -> Any:
    """One worker process serving logs_app without middlewares: every task on the plain path."""
    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(Path(tmp_path_factory.mktemp("wlog")), name)
    proc = h.start(redis_url, processes=1, worker_id="L", app="logs_app")
    h.wait_ready(proc, 1)
    yield h, load(name, redis_url), proc
    h.close()


def line(level: str, logger: str, task: str, uid: str, message: str) -> re.Pattern[str]:
    return re.compile(rf"^{STAMP} {level} {re.escape(logger)} \[L-0 {task}\[{uid}\]\] {re.escape(message)}$", re.M)


def test_task_code_logging_shows_worker_and_task_for_every_kind_of_task(plain):
    h, m, proc = plain
    tag = uuid.uuid4().hex[:8]
    cases = {
        m.in_thread: [("INFO", "logs_app.free", f"{tag} from a pool thread"),
                      ("INFO", "root", f"{tag} via logging.info")],
        m.inline: [("INFO", "logs_app.free", f"{tag} inline on the loop")],
        m.in_async: [("INFO", "logs_app.free", f"{tag} before await"),
                     ("INFO", "logs_app.free", f"{tag} from to_thread"),
                     ("WARNING", "logs_app.free.child", f"{tag} from a child logger")],
        m.no_await: [("INFO", "logs_app.free", f"{tag} without suspending")],
        m.timed: [("INFO", "logs_app.free", f"{tag} with max_time")],
        m.in_process: [("INFO", "logs_app.free", f"{tag} from a child process")],
    }
    for task, expected in cases.items():
        rec = task.add_task(tag, timeout=30)
        assert rec is not None and rec.status == "success", (task.name, rec)
        for level, logger, message in expected:
            out = h.wait_log(proc, message)
            assert line(level, logger, task.name, rec.uuid, message).search(out), (message, out[-3000:])


def test_summary_line_per_interval_a_line_per_failure_none_per_success(tmp_path, redis_url):
    name = f"t{uuid.uuid4().hex[:10]}"
    h = ProcessHarness(tmp_path, name)
    try:
        m = load(name, redis_url)
        proc = h.start(redis_url, processes=1, worker_id="L", app="logs_app",
                       env={"QTASKS_LOG_SUMMARY_SECONDS": "0.3"})
        h.wait_ready(proc, 1)
        oks = [m.ok.add_task(i) for i in range(5)]
        boom = m.boom.add_task(7)  # retry=1: one retried attempt, then the final failure
        assert all(m.app.wait(t.uuid, 30).status == "success" for t in oks)

        def totals() -> list[int] | None:
            sums = [sum(int(g[i]) for g in SUMMARY.findall(h.log(proc))) for i in range(5)]
            return sums if sums[0] >= 7 else None

        settled, ok, failed, retried, cancelled = wait_for(totals, 30, "summary lines counting 7 tasks")
        assert (settled, ok, failed, retried, cancelled) == (7, 5, 1, 1, 0)
        out = h.log(proc)
        retry = re.search(rf"^{STAMP} WARNING qtasks_fast\.worker \[L-0\] task boom\[{boom.uuid}\] error, retrying "
                          r"as ([0-9a-f-]{36}): RuntimeError: boom 7$", out, re.M)
        assert retry, out
        assert re.search(rf"^{STAMP} WARNING qtasks_fast\.worker \[L-0\] task boom\[{retry.group(1)}\] error: "
                         r"RuntimeError: boom 7$", out, re.M), out
        assert "Traceback" not in out  # the traceback is at DEBUG (and in the record)
        for t in oks:
            assert str(t.uuid) not in out  # a success has no line of its own at INFO
    finally:
        h.close()


def test_an_idle_interval_has_no_summary_line():
    w = SimpleNamespace(settled=0, executor=SimpleNamespace(n_failed=0, n_retried=0, n_cancelled=0))
    s = Summary(w)  # type: ignore[arg-type]
    assert s.line() is None
    w.settled, w.executor.n_failed = 3, 1
    assert s.line() is not None and s.line() is None


def test_an_app_that_configured_logging_keeps_its_handlers_level_and_format():
    root, ours = logging.getLogger(), logging.getLogger(LOGGER_NAME)
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    mine = Keep()
    mine.setFormatter(logging.Formatter("%(levelname)s %(worker)s %(task_name)s %(task_id)s %(message)s"))
    try:
        root.handlers = [mine]
        root.setLevel(logging.ERROR)
        setup_logging("INFO", "u-0", root=True)
        assert root.handlers == [mine] and root.level == logging.ERROR
        token = current_task.set(Envelope(uuid="abc", task_name="job", args=[], kwargs={}))
        try:
            logging.getLogger("app.x").error("failed here")
        finally:
            current_task.reset(token)
        logging.getLogger("app.x").error("outside tasks")
        assert lines == ["ERROR u-0 job abc failed here", "ERROR u-0 - - outside tasks"]
    finally:
        root.handlers, ours.handlers = saved[0], saved[2]
        root.setLevel(saved[1])
        ours.setLevel(saved[3])
        ours.propagate = saved[4]
