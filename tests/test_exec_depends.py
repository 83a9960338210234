"""Depends, State and pydantic arguments in a real worker process against a real Redis.

What a user relies on: a ``Depends`` parameter is filled in the worker (sync generator,
async context manager, async function), cleaned up after the task — last entered,
first closed, a generator seeing the task's exception so it can roll back; a
``scope="worker"`` dependency is created once per worker process, shared by every task
on the same function, and cleaned up when the worker stops; ``State`` subclasses keep
values across calls in one worker; callers never pass injected parameters; a pydantic
model argument is validated at the producer, travels as a dict, and arrives as a
model instance (validated again in the worker for producers that do not know the task);
``stopping`` fires when a worker stops.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest
from conftest import APPS

sys.path.insert(0, str(APPS))
from exec_helpers import pool_fixture, record, strings, wait_for  # noqa: E402

from qtasks_fast import QueueTasks, TaskArgumentsError  # noqa: E402

pool = pool_fixture("exec-deps", 1)


def dep_log(p: Any) -> list[str]:
    return strings(p.r.lrange(p.m.key("dep"), 0, -1))


def test_dependencies_are_resolved_in_the_worker_and_cleaned_up_in_reverse(pool):
    m = pool.m
    (wpid,) = [c.pid for c in pool.h.children(pool.proc)]
    rec = record(pool, m.injected.add_task(5).uuid)
    assert rec.status == "success", rec
    assert rec.returning == {"x": 5, "conn": wpid, "cm": "acm", "seven": 7, "shared": {"pid": wpid, "n": 1},
                             "calls": 1, "seen": True}
    assert rec.args == (5,) and rec.kwargs == {}  # nothing injected travelled
    assert dep_log(pool) == ["open", "acm-open", "acm-close", "commit"]

    again = record(pool, m.injected.add_task(6).uuid)
    assert again.returning["calls"] == 2  # State: per worker process, kept across calls
    assert again.returning["shared"] == {"pid": wpid, "n": 1}  # worker scope: created once
    other = record(pool, m.injected_sync.add_task(3).uuid)  # injected first, wire argument after it
    assert other.status == "success" and other.returning == {"y": 3, "shared": {"pid": wpid, "n": 1}}, other
    assert int(pool.r.get(m.key(f"worker_dep:{wpid}"))) == 1


def test_a_failing_task_lets_its_dependencies_roll_back(pool):
    m = pool.m
    pool.r.delete(m.key("dep"))
    rec = record(pool, m.injected.add_task(1, fail=True).uuid)
    assert rec.status == "error" and "KeyError: 'boom'" in rec.traceback, rec
    assert dep_log(pool) == ["open", "acm-open", "acm-close", "rollback:KeyError"]


def test_a_timed_out_thread_keeps_its_dependencies_until_it_ends(pool):
    m = pool.m
    pool.r.delete(m.key("dep"))
    rec = record(pool, m.dep_thread_slow.add_task(1.5).uuid)
    assert rec.status == "error" and "max_time=0.5s" in rec.traceback, rec
    assert dep_log(pool) == ["open"]  # the thread still uses it: not cleaned up yet
    wait_for(lambda: len(dep_log(pool)) == 3, 10, "the thread to end and the cleanup to follow")
    assert dep_log(pool) == ["open", "thread-end", "rollback:TimeoutError"]


def test_callers_cannot_pass_injected_parameters(pool):
    with pytest.raises(TaskArgumentsError, match="task 'injected'.*conn"):
        pool.m.injected.add_task(1, conn={"conn": 0})
    with pytest.raises(TaskArgumentsError, match="task 'injected_sync'"):
        pool.m.injected_sync.add_task({"pid": 0}, 3)


def test_pydantic_models_are_validated_at_the_producer_and_rebuilt_in_the_worker(pool):
    m = pool.m
    task = m.ship.add_task(m.Order(id=1, items=["a", "b"]))
    assert task.args == ({"id": 1, "items": ["a", "b"]},)  # on the wire: a dict
    assert record(pool, task.uuid).returning == "Order:1:a,b:-"
    rec = record(pool, m.ship.add_task({"id": "2", "items": []}, note={"id": 3, "items": ["x"]}).uuid)
    assert rec.status == "success" and rec.returning == "Order:2::3", rec
    with pytest.raises(TaskArgumentsError, match="invalid argument 'order' \\(Order\\)"):
        m.ship.add_task({"id": "not a number", "items": []})
    with pytest.raises(TaskArgumentsError, match="invalid argument 'order'"):
        m.ship.add_task(None)  # only ``note`` is optional

    stranger = QueueTasks(pool.name, broker_url=m.URL)  # a producer without the task: the worker validates
    sent = stranger.add_task("ship", {"id": "x", "items": 5})
    bad = record(pool, sent.uuid)
    assert bad.status == "error" and "invalid argument 'order' (Order)" in bad.traceback, bad


def test_stopping_fires_and_worker_scoped_dependencies_are_cleaned_up_at_stop(pool):
    (wpid,) = [c.pid for c in pool.h.children(pool.proc)]
    pool.proc.send_signal(signal.SIGTERM)
    assert pool.proc.wait(40) == 0
    lifecycle = strings(pool.r.lrange(pool.m.key("lifecycle"), 0, -1))
    assert lifecycle == [f"starting:{wpid}", f"stopping:{wpid}"], lifecycle
    closed = wait_for(lambda: strings(pool.r.lrange(pool.m.key("worker_dep_closed"), 0, -1)), 5,
                      "the worker-scoped dependency's cleanup")
    assert closed == [str(wpid)]
