"""Test app of tests/test_worker_logging.py and tests/test_metrics_logs.py: task code that logs the way
users' code does (a module logger with no level of its own, ``logging.info``), from every kind of task.

``LOGS_APP_CAPTURE=1`` adds, for every task, a middleware before ``LogCapture``, ``LogCapture`` itself and
one after it, each logging from its hooks; without it the tasks run on the worker's plain path.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.middleware import Middleware
from qtasks_fast.middlewares import LogCapture

app = QueueTasks(os.environ.get("TEST_APP_NAME", "logs"), broker_url=os.environ.get("QTASKS_BROKER_URL"))
#: like ``logging.getLogger(__name__)`` in an app: no level, no handler of its own
free = logging.getLogger("logs_app.free")
#: arrivals at each gate of ``pair`` (one worker process runs both tasks of a pair)
_gates: dict[str, list[str]] = {}


class Outer(Middleware):
    """Added before LogCapture: its hooks wrap LogCapture's."""

    def before_execute(self, ctx: Any) -> None:
        free.info("outer before %s", ctx.task_name)

    def after_execute(self, ctx: Any, status: str, result: Any) -> None:
        free.info("outer after %s", status)


class Inner(Middleware):
    """Added after LogCapture: its hooks run inside the capture."""

    def before_execute(self, ctx: Any) -> None:
        free.info("inner before %s", ctx.task_name)

    async def after_execute(self, ctx: Any, status: str, result: Any) -> None:
        free.info("inner after %s", status)


if os.environ.get("LOGS_APP_CAPTURE"):
    app.add_middleware(Outer)
    app.add_middleware(LogCapture)
    app.add_middleware(Inner)


@app.task
def in_thread(tag: str) -> str:
    free.info("%s from a pool thread", tag)
    logging.info("%s via logging.info", tag)
    return tag


@app.task(executor="inline")
def inline(tag: str) -> str:
    free.info("%s inline on the loop", tag)
    return tag


@app.task
async def in_async(tag: str) -> str:
    free.info("%s before await", tag)
    await asyncio.to_thread(free.info, "%s from to_thread", tag)
    logging.getLogger("logs_app.free.child").warning("%s from a child logger", tag)
    return tag


@app.task
async def no_await(tag: str) -> str:
    free.info("%s without suspending", tag)
    return tag


@app.task(max_time=30)
async def timed(tag: str) -> str:
    await asyncio.sleep(0)
    free.info("%s with max_time", tag)
    return tag


@app.task(executor="process")
def in_process(tag: str) -> str:
    free.info("%s from a child process", tag)
    return tag


@app.task
async def pair(tag: str, gate: str) -> str:
    """Logs, waits until its twin logged too, logs again: two run at once, their lines interleave."""
    free.info("%s first", tag)
    arrived = _gates.setdefault(gate, [])
    arrived.append(tag)
    for _ in range(1000):
        if len(arrived) >= 2:
            break
        await asyncio.sleep(0.01)
    free.info("%s last", tag)
    return tag


@app.task
async def ok(x: int) -> int:
    return x


@app.task(retry=1)
async def boom(x: int) -> int:
    raise RuntimeError(f"boom {x}")
