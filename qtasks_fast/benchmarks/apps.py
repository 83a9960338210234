"""The benchmark app: the tasks every suite runs, identical in the producer and in the worker processes.

Worker processes load ``qtasks_fast.benchmarks.apps:app``; its name and broker come from
``QTASKS_BENCH_APP`` and ``QTASKS_BROKER_URL`` so that every benchmark case can
use a fresh app name (its own keys) on a shared Redis. Producers build their
own client with :func:`make_app` so they register the very same tasks.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, TypeVar

from qtasks_fast import QueueTasks
from qtasks_fast.app import BaseQueueTasks

A = TypeVar("A", bound=BaseQueueTasks)

#: the key the io-redis suite's tasks (and its no-queue reference loop) INCR
IO_KEY = "bench:io-redis"
_clients: dict[tuple[int, int], Any] = {}


def shared_client() -> Any:
    """One ``redis.asyncio`` client per process and event loop, as a service's tasks share one."""
    import redis.asyncio

    key = (os.getpid(), id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = redis.asyncio.Redis.from_url(
            os.environ.get("QTASKS_BENCH_IO_URL") or os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/9"))
    return client


#: the queue of ``noop_q2`` (the scaling suite's two-queue case; env ``QTASKS_BENCH_QUEUES=2`` in the workers)
SECOND_QUEUE = "q2"

#: iterations of the CPU-bound task (about 1-3 ms of pure Python on a current core)
CPU_LOOPS = 20_000


def register(app: A, queues: int = 1) -> A:
    """Register the benchmark tasks on ``app`` (sync or async client) and return it; ``queues=2`` adds
    ``noop_q2`` on :data:`SECOND_QUEUE`, so that the app's workers serve two queues."""

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="noop_sync", executor="inline")
    def noop_sync() -> None:
        return None

    @app.task(name="sleep10ms")
    async def sleep10ms() -> None:
        await asyncio.sleep(0.01)

    @app.task(name="cpu", executor="inline")
    def cpu(loops: int = CPU_LOOPS) -> int:
        acc = 0
        for i in range(loops):
            acc = (acc + i * i) % 1_000_003
        return acc

    @app.task(name="stamp")
    async def stamp() -> float:
        """When the body started (system-wide monotonic clock): the dispatch suite subtracts its enqueue time."""
        return time.monotonic()

    @app.task(name="io_redis")
    async def io_redis() -> None:
        """The commonest real task body: one command on a client the process shares."""
        await shared_client().incr(IO_KEY)

    @app.task(name="echo")
    async def echo(data: bytes) -> bytes:
        return data

    if queues > 1:  # the scaling suite's second queue; other suites' workers serve one queue, as before
        @app.task(name="noop_q2", queue=SECOND_QUEUE)
        async def noop_q2() -> None:
            return None

    return app


def make_app(name: str, url: str, cls: type[Any] = QueueTasks, queues: int = 1) -> Any:
    """A client app named ``name`` on ``url`` with the benchmark tasks (``cls``: sync or async QueueTasks)."""
    return register(cls(name, broker_url=url), queues)


app = make_app(os.environ.get("QTASKS_BENCH_APP", "bench"),
               os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/9"),
               queues=int(os.environ.get("QTASKS_BENCH_QUEUES", "1")))
