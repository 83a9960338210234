"""The producer API of issue 4 end to end: real worker processes (the CLI) against a real Redis.

What a user relies on: a ``TaskManager`` that changes a call's ``max_time`` changes what the
worker enforces, for that task only; ``countdown``/``eta`` hold a task back until its time and
not much longer; ``chain`` hands each result to the next step and ``group`` waits for all of its
members (sync and async clients); tasks declared on a ``Router`` or with ``shared_task`` run in
the app that includes them, on the router's queue.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from pathlib import Path

import pytest
from apps.testkit import forget_shared_tasks, load_app_copy
from conftest import APPS, ROOT

from qtasks_fast import chain, group, router
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.components.task_manager import TaskManager

# The app the workers import (written to the test's tmp dir) and the producer loads too.
APP_SOURCE = '''
import asyncio, os, time
from qtasks_fast import QueueTasks, Router, shared_task
from qtasks_fast.config import GlobalConfig

app = QueueTasks(os.environ["TEST_APP_NAME"], broker_url=os.environ["QTASKS_BROKER_URL"], config=GlobalConfig())

@app.task(max_time=0.3)
async def heavy_task(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds

@app.task(max_time=0.3)
async def light_task(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds

@app.task
def add(a: int, b: int) -> int:
    return a + b

@app.task
async def mul(a: int, b: int) -> int:
    return a * b

@app.task
async def slow_mul(a: int, b: int) -> int:
    await asyncio.sleep(1.0)
    return a * b

@app.task
def fail(x: int) -> int:
    raise ValueError(f"step failed with {x}")

@app.task
def stamp(tag: str) -> float:
    return time.time()

routes = Router(queue="routed")

@routes.task
def routed_upper(s: str) -> str:
    return s.upper()

app.include_router(routes)

@shared_task(name="app_e2e_shared_echo")
def shared_echo(x: int) -> list:
    return [x, "shared"]
'''
MODULE = "app_e2e_features"


class RaiseHeavy(TaskManager):
    """The documented pattern: a bigger ``max_time`` for one task, decided where tasks are sent."""

    def mutate(self, task):
        if task.name == "heavy_task":
            task.timeout = 1.5
        return task


@pytest.fixture
def features(harness, redis_url, tmp_path: Path):
    """(producer module, worker pool): the app above, served by 2 worker processes."""
    (tmp_path / f"{MODULE}.py").write_text(APP_SOURCE)
    before = set(router._shared)
    module = load_app_copy(tmp_path / f"{MODULE}.py", f"{MODULE}_{harness.app_name}", harness.app_name, redis_url)
    path = os.pathsep.join([str(tmp_path), str(APPS), str(ROOT)])
    proc = harness.start(redis_url, app=MODULE, processes=2, env={"PYTHONPATH": path})
    harness.wait_ready(proc)
    yield module, proc
    forget_shared_tasks(before)  # shared tasks join every app: keep other tests' apps clean


def test_task_manager_changes_the_max_time_the_worker_enforces(features):
    m, _ = features
    m.app.config.task_manager = RaiseHeavy()
    # heavy_task is registered with max_time=0.3: 0.8 s only succeeds because the manager raised it
    within = m.heavy_task.add_task(0.8)
    past = m.heavy_task.add_task(5.0)           # past the raised limit: it fires at 1.5 s
    light_slow = m.light_task.add_task(0.8)     # not mutated: its own 0.3 s limit holds
    light_fast = m.light_task.add_task(0.05)
    t0 = time.monotonic()
    assert m.app.wait(within.uuid, 20).status == "success"
    timed_out = m.app.wait(past.uuid, 20)
    assert timed_out.status == "error" and "max_time=1.5" in timed_out.traceback, timed_out
    assert time.monotonic() - t0 < 4.5, "the 5 s task should have been stopped at its 1.5 s limit"
    slow = m.app.wait(light_slow.uuid, 20)
    assert slow.status == "error" and "max_time=0.3" in slow.traceback, slow
    assert m.app.wait(light_fast.uuid, 20).returning == 0.05


def test_countdown_and_eta_hold_a_task_until_its_time(features):
    m, _ = features
    sent = time.time()
    later = m.stamp.add_task("countdown", countdown=2.0)
    at = m.stamp.add_task("eta", eta=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1.5))
    at_ts = m.stamp.add_task("eta-ts", eta=sent + 1.0)
    now = m.stamp.add_task("now")
    assert m.app.get(later.uuid).status == "new"  # held, not handed to a worker
    ran_now = m.app.wait(now.uuid, 20).returning
    assert ran_now - sent < 1.0, "the worker is up: an undelayed task runs at once"
    for task, delay in ((later, 2.0), (at, 1.5), (at_ts, 1.0)):
        ran = m.app.wait(task.uuid, 20).returning
        assert ran >= sent + delay - 0.01, (task.args, ran - sent)   # never before its time
        assert ran <= sent + delay + 1.5, (task.args, ran - sent)    # and promptly once due


def test_chain_passes_each_result_to_the_next_step(features):
    m, _ = features
    res = chain(m.add.s(1, 2), m.add.s(10), m.mul.s(3)).add_task(app=m.app)
    last = res.wait(20)
    assert last is not None and last.task_name == "mul" and last.returning == (1 + 2 + 10) * 3
    broken = chain(m.add.s(1, 2), m.fail.s(), m.add.s(1), app=m.app).add_task().wait(20)
    assert broken.task_name == "fail" and broken.status == "error"  # the chain stops at the failed step
    assert "step failed with 3" in broken.traceback

    async def twin() -> object:
        aapp = AsyncQueueTasks(m.app.name, broker_url=m.app.broker_url)
        return (await (await chain(m.add.s(2, 3), m.mul.s(4)).add_task(app=aapp)).wait(20)).returning

    assert asyncio.run(twin()) == 20


def test_group_waits_for_every_member(features):
    m, _ = features
    members = group(*[m.add.s(i, i) for i in range(20)], m.slow_mul.s(6, 7), app=m.app).add_task()
    assert len(members) == 21
    done = members.wait(20)
    assert [t.returning for t in done] == [2 * i for i in range(20)] + [42]  # the slow one included
    assert all(t.status == "success" for t in done)
    assert members.wait(0) == done  # finished: no waiting

    async def twin() -> list[object]:
        aapp = AsyncQueueTasks(m.app.name, broker_url=m.app.broker_url)
        sent = await group(m.add.s(1, 1), m.slow_mul.s(2, 2)).add_task(app=aapp)
        return [t.returning for t in await sent.wait(20)]

    assert asyncio.run(twin()) == [2, 4]


def test_router_and_shared_tasks_run_in_the_including_app(features):
    m, _ = features
    assert {"routed_upper", "app_e2e_shared_echo"} <= set(m.app.tasks)
    assert "routed" in m.app.queues
    routed = m.routed_upper.add_task("abc", timeout=20)
    assert routed.returning == "ABC" and routed.queue == "routed"
    shared = m.shared_echo.add_task(5, timeout=20)
    assert shared.returning == [5, "shared"]
