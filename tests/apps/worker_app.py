"""Test app of tests/test_worker_*.py: tasks that leave traces in Redis under ``<app name>:`` keys.

The traces (start/end counters, a finish-order list, side-effect flags) are what
the tests read to see what ran, when and how often, from outside the workers.
"""

import asyncio
import os
import time

from testkit import RedisTraces

from qtasks_fast import QueueTasks
from qtasks_fast.config import GlobalConfig
from qtasks_fast.worker.followups import feed

NAME = os.environ.get("TEST_APP_NAME", "worker")
URL = os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/0")
app = QueueTasks(NAME, broker_url=URL, config=GlobalConfig())
traces = RedisTraces(NAME, URL)
key, rc, sc = traces.key, traces.rc, traces.sc


# ---------------------------------------------------------------------------- cancel
@app.task
async def hang(tag: str, seconds: float) -> str:
    """Marks that it started, waits, then leaves a side effect a cancelled run must never leave."""
    await rc().set(key(f"{tag}:started"), 1)
    await asyncio.sleep(seconds)
    await rc().set(key(f"{tag}:after"), 1)
    return tag


# --------------------------------------------------------------------------- limits
@app.task(concurrency_limit=3)
async def limited(i: int, seconds: float) -> int:
    """Counts how many copies run at once, fleet-wide; the peak is what the limit must bound."""
    r = rc()
    running = await r.incr(key("running"))
    await r.rpush(key("peaks"), running)
    await asyncio.sleep(seconds)
    await r.decr(key("running"))
    return i


@app.task
async def unlimited(i: int) -> int:
    await asyncio.sleep(0.01)
    return i


# --------------------------------------------------------------------------- chains
@app.task
async def step_add(x: int, y: int) -> int:
    await rc().incr(key("add_runs"))
    return x + y


@app.task
async def step_mul(x: int, y: int) -> int:
    await rc().incr(key("mul_runs"))
    await asyncio.sleep(0.05)
    return x * y


@app.task(queue="other", priority=3)
def step_sub(x: int, y: int) -> int:
    return x - y


# ----------------------------------------------------------------------------- feed
@app.task
def square(v: int) -> int:
    return v * v


@app.task(generate_handler=feed("square"))
def split_sync(n: int):
    yield from range(n)


@app.task(generate_handler=feed("square"))
async def split_async(n: int):
    for v in range(n):
        await asyncio.sleep(0)
        yield v + 100


# ------------------------------------------------------------------------ priorities
@app.task(executor="inline")
def mark(tag: str, seconds: float = 0.0) -> float:
    """Appends ``tag`` to the finish-order list (inline: one at a time, in the order the worker runs them)."""
    if seconds:
        time.sleep(seconds)
    sc().rpush(key("order"), tag)
    return time.time()


@app.task
async def amark(tag: str, seconds: float = 0.0) -> str:
    """Appends ``tag`` to the start-order list, then works for ``seconds``."""
    await rc().rpush(key("started"), tag)
    await asyncio.sleep(seconds)
    return tag
