"""Task control in real worker processes against a real Redis: cancel, fleet-wide limits, priorities.

What a user relies on: ``app.cancel`` stops a running async task (what it would do
after its current await never happens) and a fetched-but-unstarted one never runs,
both recorded ``cancel`` with the reason; ``concurrency_limit=3`` holds across every
worker process of the fleet under load; priority 0 tasks overtake a backlog of
lower-priority ones.
"""

from __future__ import annotations

import time
from types import ModuleType

from apps.testkit import load_app_copy, wait_for
from conftest import APPS

APP = "worker_app"


def producer(harness, redis_url: str) -> ModuleType:
    """A copy of tests/apps/worker_app.py bound to this test's app name (what the workers import)."""
    return load_app_copy(APPS / f"{APP}.py", f"{APP}_{harness.app_name}", harness.app_name, redis_url)


def test_cancel_stops_a_running_task_and_drops_an_unstarted_one(harness, redis_url):
    m = producer(harness, redis_url)
    r = m.app.storage.conn.sync
    proc = harness.start(redis_url, "--concurrency", "1", processes=1, app=APP)
    harness.wait_ready(proc, 1)
    # concurrency 1: A runs, B is fetched with it and waits in the worker's backlog
    a, b = m.app.add_tasks([m.hang.s("A", 3.0), m.hang.s("B", 3.0)])
    started = time.monotonic()
    wait_for(lambda: r.exists(m.key("A:started")), 10, "task A to start")

    assert m.app.cancel(b.uuid, "not needed any more") == "running"
    rec_b = m.app.wait(b.uuid, 10)
    assert rec_b is not None and rec_b.status == "cancel", rec_b
    assert "not needed any more" in (rec_b.traceback or ""), rec_b

    assert m.app.cancel(a.uuid, "user pressed stop") == "running"
    rec_a = m.app.wait(a.uuid, 10)
    assert rec_a is not None and rec_a.status == "cancel", rec_a
    assert "user pressed stop" in (rec_a.traceback or ""), rec_a
    assert time.monotonic() - started < 3.0, "A was not stopped: it ran to its end"

    # the cancelled task gave its (only) slot back: the next task runs at once
    c = m.app.add_task("hang", "C", 0.0, timeout=10)
    assert c is not None and c.status == "success" and c.returning == "C", c
    # what A would have done after its await never happens, and B never ran at all
    time.sleep(max(0.0, started + 3.5 - time.monotonic()))
    assert not r.exists(m.key("A:after"))
    assert not r.exists(m.key("B:started")) and not r.exists(m.key("B:after"))
    assert m.app.cancel(a.uuid, "again") == "finished"
    assert harness.log(proc).count("Traceback") == 0, harness.log(proc)


def test_fleet_wide_limit_holds_across_worker_processes(harness, redis_url):
    m = producer(harness, redis_url)
    r = m.app.storage.conn.sync
    proc = harness.start(redis_url, "--concurrency", "20", processes=2, app=APP)
    harness.wait_ready(proc, 2)
    limited = m.app.add_tasks([m.limited.s(i, 0.2) for i in range(61)])
    free = m.app.add_tasks([m.unlimited.s(i) for i in range(200)])
    # the last one is fetched at once and waits for a slot in a worker: cancel drops it there, unrun
    dropped = limited.pop()
    assert m.app.cancel(dropped.uuid, "too late") == "running"
    rec = m.app.wait(dropped.uuid, 10)
    assert rec is not None and rec.status == "cancel" and "too late" in (rec.traceback or ""), rec
    # tasks without a limit are not held up behind the limited ones
    for t in free:
        rec = m.app.wait(t.uuid, 20)
        assert rec is not None and rec.status == "success", rec
    assert len(r.lrange(m.key("peaks"), 0, -1)) < 60, "unlimited tasks waited for all limited ones"
    for t in limited:
        rec = m.app.wait(t.uuid, 40)
        assert rec is not None and rec.status == "success" and rec.returning is not None, rec
    peaks = [int(v) for v in r.lrange(m.key("peaks"), 0, -1)]
    assert len(peaks) == 60  # each ran once, the cancelled one never
    assert max(peaks) <= 3, f"limit 3 exceeded: {max(peaks)} ran at once"
    assert max(peaks) == 3, "the limit serialised the tasks instead of running 3 at once"
    workers = {rec.worker_id for rec in (m.app.get(t.uuid) for t in limited) if rec is not None}
    assert len(workers) == 2, f"both processes should have run limited tasks, got {workers}"
    assert int(r.get(m.key("running")) or 0) == 0


def test_priority_zero_overtakes_a_backlog(harness, redis_url):
    m = producer(harness, redis_url)
    r = m.app.storage.conn.sync
    low = [m.app.add_task("mark", f"low{i}", priority=9) for i in range(200)]
    high = [m.app.add_task("mark", f"high{i}", priority=0) for i in range(20)]
    assert all(t.priority == 0 for t in high)
    proc = harness.start(redis_url, "--concurrency", "1", processes=1, app=APP)
    for t in low + high:
        assert m.app.wait(t.uuid, 30) is not None, t
    order = [v.decode() for v in r.lrange(m.key("order"), 0, -1)]
    assert len(order) == 220 and len(set(order)) == 220
    last_high = max(order.index(f"high{i}") for i in range(20))
    # the worker started after all 220 were queued: priority 0 comes first, give or take the one
    # or two low tasks it had fetched in its first batch
    assert last_high < 23, f"priority 0 tasks were not run first: the last one ran {last_high + 1}th"
    assert harness.log(proc).count("Traceback") == 0


def test_priority_zero_goes_ahead_of_a_prefetched_backlog(harness, redis_url):
    m = producer(harness, redis_url)
    r = m.app.storage.conn.sync
    # durations spread out (50 distinct ones, 2 ms apart), so slots free one by one rather than in waves: tasks
    # started in the same loop turn with equal durations would end together
    low = [m.app.add_task("amark", f"low{i}", 0.05 + (i * 7 % 50) * 0.002, priority=9) for i in range(300)]
    # concurrency 50: 50 low tasks run and 50 more wait, prefetched, in the worker
    proc = harness.start(redis_url, "--concurrency", "50", processes=1, app=APP)
    wait_for(lambda: r.llen(m.key("started")) >= 60, 20, "the worker to be busy with the low tasks")
    before = r.llen(m.key("started"))
    high = m.app.add_tasks([m.amark.s(f"high{i}") for i in range(10)])  # one round trip, priority 0
    for t in low + high:
        assert m.app.wait(t.uuid, 30) is not None, t
    order = [v.decode() for v in r.lrange(m.key("started"), 0, -1)]
    assert len(order) == 310 and len(set(order)) == 310
    last_high = max(order.index(f"high{i}") for i in range(10))
    # urgent tasks start as slots free up, ahead of the 50 prefetched low ones (without that, 50 low
    # tasks would start first)
    overtaken = last_high - before - 10
    assert overtaken < 30, f"{overtaken} low tasks started between the urgent ones' enqueue and their start"
    assert harness.log(proc).count("Traceback") == 0


def test_limit_slots_and_waiting_tasks_outlive_a_short_lease(harness, redis_url):
    m = producer(harness, redis_url)
    r = m.app.storage.conn.sync
    # a 1 s lease: running tasks keep their fleet-wide slot and waiting ones their delivery only
    # because the lease keeper renews both; otherwise a 4th copy would start, or one would run twice
    proc = harness.start(redis_url, "--concurrency", "10", processes=2, app=APP, env={"QTASKS_LEASE_SECONDS": "1"})
    harness.wait_ready(proc, 2)
    tasks = m.app.add_tasks([m.limited.s(i, 2.5) for i in range(6)])
    for t in tasks:
        rec = m.app.wait(t.uuid, 30)
        assert rec is not None and rec.status == "success", rec
    peaks = [int(v) for v in r.lrange(m.key("peaks"), 0, -1)]
    assert len(peaks) == 6, f"some task ran more than once: {len(peaks)} runs"
    assert max(peaks) == 3, peaks


def test_cancel_works_after_the_broker_restarted(harness, private_redis):
    m = producer(harness, private_redis.url)
    r = m.app.storage.conn.sync
    proc = harness.start(private_redis.url, "--concurrency", "4", processes=1, app=APP)
    harness.wait_ready(proc, 1)
    private_redis.restart()  # the worker's cancel subscription drops and must be opened again
    t = m.app.add_task("hang", "R", 30.0)
    wait_for(lambda: r.exists(m.key("R:started")), 20, "the task to start after the restart")
    deadline = time.monotonic() + 10
    while True:  # a request published before the listener is back is not seen: ask again until it is
        assert m.app.cancel(t.uuid, "after restart") in ("running", "finished")
        rec = m.app.wait(t.uuid, 0.5)
        if rec is not None or time.monotonic() > deadline:
            break
    assert rec is not None and rec.status == "cancel" and "after restart" in (rec.traceback or ""), rec
