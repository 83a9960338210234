"""What finished tasks enqueue after themselves, in real worker processes against a real Redis.

What a user relies on: a chain runs to its end with no producer alive (the
workers carry it), each next step gets the previous result first and runs on its
own task's queue; a step run twice (redelivery after a crash) starts the rest of
the chain once; ``generate_handler=feed("task")`` turns each yielded value into a
task of its own, for sync and async generators.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from types import ModuleType

from apps.testkit import load_app_copy
from conftest import APPS, cli_env

from qtasks_fast.worker.followups import CHAIN_NAMESPACE

APP = "worker_app"

# A producer process that sends two chains and exits at once: (1 + 1) * 10 - 3 = 17 and (2 + 2) * 10 - 3 = 37 are
# computed without it. The second chain's first step is queued twice under one uuid: what a redelivery of a
# step after a crash looks like.
PRODUCE_CHAINS = """
import worker_app as w
from qtasks_fast.canvas import chain
from qtasks_fast.schemas import META_CHAIN
res = chain(w.step_add.s(1, 1), w.step_mul.s(10), w.step_sub.s(3), app=w.app).add_task()
env, _ = w.app.build("step_add", [2, 2], {})
env.meta[META_CHAIN] = [["step_mul", [10], {}], ["step_sub", [3], {}]]
w.app.broker.enqueue_sync([env, env], w.app.storage)
print(res.uuid, env.uuid)
"""


def producer(harness, redis_url: str) -> ModuleType:
    """A copy of tests/apps/worker_app.py bound to this test's app name (what the workers import)."""
    return load_app_copy(APPS / f"{APP}.py", f"{APP}_{harness.app_name}", harness.app_name, redis_url)


def wait_record(app, uuid: str, timeout: float):
    """The final record of ``uuid``, waiting for it to exist first (a chain step is enqueued by a worker)."""
    deadline = time.monotonic() + timeout
    while True:
        task = app.wait(uuid, max(0.0, deadline - time.monotonic()))
        if task is not None or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def next_uuid(u: str) -> str:
    return str(uuid.uuid5(CHAIN_NAMESPACE, u))


def produce_chains_and_exit(harness, redis_url: str) -> list[str]:
    """Run a producer process that enqueues the chains' first steps and exits; return their uuids."""
    out = subprocess.run([sys.executable, "-c", PRODUCE_CHAINS], env=cli_env(redis_url, harness.app_name), cwd=APPS,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_chains_finish_after_their_producer_exited(harness, redis_url):
    m = producer(harness, redis_url)
    firsts = produce_chains_and_exit(harness, redis_url)
    proc = harness.start(redis_url, processes=2, app=APP)
    for first, (start, mid_result, result) in zip(firsts, [(2, 20, 17), (4, 40, 37)], strict=True):
        mid, last = next_uuid(first), next_uuid(next_uuid(first))
        final = wait_record(m.app, last, 30)
        assert final is not None, harness.log(proc)[-3000:]
        assert final.status == "success" and final.returning == result, final
        # the last step runs where and how its own task says: queue "other", priority 3
        assert final.task_name == "step_sub" and final.queue == "other" and final.priority == 3, final
        assert final.args == (mid_result, 3), final
        step2 = m.app.get(mid)
        assert step2 is not None and step2.status == "success", step2
        assert step2.args == (start, 10) and step2.returning == mid_result, step2
        step1 = m.app.get(first)
        assert step1 is not None and step1.returning == start, step1
    # two chains, one of whose first step ran twice: the middle step ran once per chain
    r = m.app.storage.conn.sync
    assert int(r.get(m.key("add_runs")) or 0) == 3
    assert int(r.get(m.key("mul_runs")) or 0) == 2
    assert harness.log(proc).count("Traceback") == 0


def test_feed_enqueues_a_task_per_yielded_value(harness, redis_url):
    m = producer(harness, redis_url)
    proc = harness.start(redis_url, processes=1, app=APP)
    for name, n, first in (("split_sync", 5, 0), ("split_async", 4, 100)):
        rec = m.app.add_task(name, n, timeout=20)
        assert rec is not None and rec.status == "success", (name, rec, harness.log(proc)[-3000:])
        fed = rec.returning
        assert isinstance(fed, list) and len(fed) == n, (name, fed)
        results = []
        for u in fed:
            child = m.app.wait(u, 20)
            assert child is not None and child.task_name == "square" and child.status == "success", child
            results.append(child.returning)
        assert results == [(first + v) ** 2 for v in range(n)], (name, results)
    assert harness.log(proc).count("Traceback") == 0
