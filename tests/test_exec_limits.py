"""Retries, time limits, cancel and ``executor="process"`` in a real worker process against a real Redis.

What a user relies on: ``retry=N`` with ``retry_on_exc`` retries matching errors (subclasses,
even raised in a child process) after an exponential backoff, and nothing else; ``max_time``
ends an async task, frees the slot of a sync task in a thread (the thread runs on, its
result discarded), and kills a process task's child (a fresh child runs the next call);
``app.cancel`` of a running thread task records ``cancel`` at once, of a process task
kills its child; a process task returns its value, reports its traceback, and runs
generators and echo tasks, while its prints never disturb the protocol.

The pool is one worker process with ``--concurrency 1``, so "the slot is free" is visible:
the next task runs.
"""

from __future__ import annotations

import sys
import time

import psutil
from conftest import APPS

sys.path.insert(0, str(APPS))
from exec_helpers import pool_fixture, record, strings, wait_for  # noqa: E402

from qtasks_fast import QueueTasks  # noqa: E402
from qtasks_fast.middlewares import retry_delay  # noqa: E402

pool = pool_fixture("exec-limits", 1, "--concurrency", "1")


# ----------------------------------------------------------------------------------- retries
def test_retries_back_off_exponentially_and_follow_the_chain_to_success(pool):
    m, r = pool.m, pool.r
    task = m.flaky.add_task("a", 2)
    final = record(pool, task.uuid)
    assert final.status == "success" and final.returning == "a after 3", final
    at = [float(x) for x in r.lrange(m.key("flaky:a:at"), 0, -1)]
    assert len(at) == 3
    # retry_backoff=0.4, no jitter: the 1st retry waits 0.4 s, the 2nd 0.8 s (eta held by the broker)
    assert at[1] - at[0] >= 0.4 - 0.05 and at[2] - at[1] >= 0.8 - 0.05, at
    # ... and not much longer: the worker wakes for a due retry instead of waiting for its next reclaim pass
    assert at[1] - at[0] < 0.4 + 1.0 and at[2] - at[1] < 0.8 + 1.0, at
    first = m.app.get(task.uuid)
    second = m.app.get(first.retry_child_uuid)
    assert first.status == second.status == "error" and "Flaky: attempt 1" in first.traceback
    assert second.retry_parent_uuid == task.uuid and second.retry_child_uuid == final.uuid
    assert (first.retry, second.retry, final.retry) == (3, 2, 1)


def test_an_error_not_in_retry_on_exc_is_not_retried(pool):
    m = pool.m
    rec = record(pool, m.wrong_error.add_task("w").uuid)
    assert rec.status == "error" and rec.retry_child_uuid is None and "ValueError" in rec.traceback
    assert int(pool.r.get(m.key("wrong:w"))) == 1


def test_retry_delay_is_capped_and_jittered():
    app = QueueTasks("exec-unit-retry", broker_url="memory://")
    fixed = app.task(name="fixed", retry=9, retry_backoff=0.5, retry_backoff_max=3, retry_jitter=False)(lambda: 0)
    assert [retry_delay(fixed, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jit = app.task(name="jit", retry=9, retry_backoff=True)(lambda: 0)
    samples = [retry_delay(jit, 3) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples) and len(set(samples)) > 100  # full jitter over [0, 1 * 2**2]
    none = app.task(name="none", retry=9)(lambda: 0)
    assert retry_delay(none, 4) == 0.0


# ------------------------------------------------------------------------------- time limits
def test_max_time_cancels_an_async_task(pool):
    m = pool.m
    t0 = time.monotonic()
    rec = record(pool, m.async_slow.add_task("as1", 5).uuid)
    assert rec.status == "error" and "TimeoutError: task exceeded max_time=0.5s" in rec.traceback, rec
    assert time.monotonic() - t0 < 4
    assert not pool.r.exists(m.key("as1:after"))


def test_max_time_of_a_thread_task_frees_the_slot_while_the_thread_runs_on(pool):
    m, r = pool.m, pool.r
    slow = m.thread_slow.add_task("ts1", 3.0)
    nxt = m.add.add_task(2, 3)  # concurrency 1: runs only once the slow task's slot is free
    rec = record(pool, slow.uuid)
    assert rec.status == "error" and "max_time=0.5s" in rec.traceback, rec
    done = record(pool, nxt.uuid)
    assert done.returning == 5
    assert not r.exists(m.key("ts1:after")), "the next task should have run while the thread still slept"
    wait_for(lambda: r.exists(m.key("ts1:after")), 10, "the timed-out thread to run on to its end")
    assert m.app.get(slow.uuid).status == "error"  # its late result is discarded


def test_max_time_of_a_process_task_kills_its_process_and_a_fresh_one_runs_the_next(pool):
    m, r = pool.m, pool.r
    rec = record(pool, m.proc_slow.add_task("ps1", 30).uuid)
    assert rec.status == "error" and "max_time=0.8s" in rec.traceback and "was killed" in rec.traceback, rec
    pid = int(r.get(m.key("ps1:pid")))
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 5,
             "the timed-out child to be gone")
    nxt = record(pool, m.proc_work.add_task(2, 3).uuid)
    assert nxt.status == "success" and nxt.returning["sum"] == 5 and nxt.returning["pid"] != pid, nxt
    assert not r.exists(m.key("ps1:after"))


# ------------------------------------------------------------------------------------ cancel
def test_cancel_of_a_thread_task_records_cancel_at_once_and_discards_its_result(pool):
    m, r = pool.m, pool.r
    task = m.thread_hang.add_task("th1", 2.5)
    wait_for(lambda: r.exists(m.key("th1:started")), 10, "the thread task to start")
    t0 = time.monotonic()
    assert m.app.cancel(task.uuid, "stop it") == "running"
    rec = record(pool, task.uuid)
    assert rec.status == "cancel" and rec.traceback == "stop it", rec
    assert time.monotonic() - t0 < 2.0 and not r.exists(m.key("th1:after"))
    wait_for(lambda: r.exists(m.key("th1:after")), 10, "the cancelled thread to end by itself")
    assert m.app.get(task.uuid).status == "cancel"


def test_cancel_of_a_process_task_kills_its_process(pool):
    m, r = pool.m, pool.r
    task = m.proc_hang.add_task("ph1", 30)
    pid = int(wait_for(lambda: r.get(m.key("ph1:pid")), 15, "the process task to start"))
    assert m.app.cancel(task.uuid, "enough") == "running"
    rec = record(pool, task.uuid)
    assert rec.status == "cancel" and rec.traceback == "enough", rec
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 5,
             "the cancelled child to be gone")


# --------------------------------------------------------------------------- process executor
def test_process_tasks_return_values_tracebacks_and_generators(pool):
    m = pool.m
    worker_pids = {c.pid for c in pool.h.children(pool.proc)}
    ok = record(pool, m.proc_work.add_task(20, 22).uuid)
    assert ok.status == "success" and ok.returning["sum"] == 42, ok
    assert ok.returning["worker_pid"] in worker_pids and ok.returning["pid"] not in worker_pids

    task = m.proc_work.add_task(1, 1, fail=True)
    final = record(pool, task.uuid)
    parent = m.app.get(task.uuid)
    # Flaky (a ConnectionError subclass) raised in the child matches retry_on_exc=[ConnectionError]
    assert parent.status == "error" and parent.retry_child_uuid == final.uuid, parent
    assert "Traceback" in parent.traceback and "Flaky: in the child" in parent.traceback
    assert final.status == "error" and final.retry_child_uuid is None

    gen = record(pool, m.proc_echo.add_task(3).uuid)
    assert gen.returning == ["proc_echo:0", "proc_echo:1", "proc_echo:2"], gen
    assert "stdout noise that must not reach the frames" in pool.h.log(pool.proc)
    assert strings([]) == []
