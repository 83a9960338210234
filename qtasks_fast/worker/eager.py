"""Async tasks that finish without suspending run without an asyncio Task of their own.

Why: a no-op ``async def`` task costs a worker more as an asyncio Task (create, schedule, one
loop turn, step, done callback) than everything else it does between Redis and the task function;
and many tasks of a busy service return without awaiting anything slow. Python 3.12 calls this an
eager task; on 3.11 it has to be built by hand.

How, without breaking what task code may rely on: a *runner* (an ordinary asyncio Task) starts the
queued coroutines one after another. Each first step runs in a fresh copy of the contextvars
context, as a Task of its own would. A coroutine that finishes in that step is done. One that
suspends keeps that runner Task as its own from then on, so ``asyncio.current_task()``,
``asyncio.timeout()`` and cancellation see one and the same Task from its first line to its last;
a new runner takes over the queue. The only difference a task can notice: the Task object it sees
in its first step is shared with other tasks that finished in their first step before it.

Tasks with ``max_time`` do not come here (their deadline needs a Task of their own from the start).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from qtasks_fast.log import current_task

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.worker.executor import Executor


class Resume:
    """Await the rest of a coroutine whose first step (run elsewhere) yielded ``fut``.

    It passes what the coroutine yields to the awaiting Task and what the Task sends or throws
    (results, cancellation) back to the coroutine, as ``await coro`` would have from the start.
    """

    __slots__ = ("coro", "ctx", "fut")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context, fut: Any) -> None:
        self.coro, self.ctx, self.fut = coro, ctx, fut

    def __await__(self) -> Generator[Any, None, Any]:
        coro, run, fut = self.coro, self.ctx.run, self.fut
        while True:
            try:
                yield fut
            except BaseException as exc:  # noqa: BLE001 - forwarded into the task's own code
                try:
                    fut = run(coro.throw, exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                fut = run(coro.send, None)
            except StopIteration as stop:
                return stop.value


class EagerRunners:
    """The queue of async tasks to start, and the runner Task serving it (see the module doc)."""

    def __init__(self, executor: Executor) -> None:
        self.ex = executor
        self.jobs: deque[Delivery] = deque()
        self._runner: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None

    def submit(self, d: Delivery) -> None:
        self.jobs.append(d)
        waiter = self._waiter
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
        elif self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._serve())

    def close(self) -> None:
        """Worker stop: end the idle runner (a runner that owns a task ends with it)."""
        if self._runner is not None and self._waiter is not None:
            self._runner.cancel()
        self._runner = None

    def take(self, d: Delivery) -> bool:
        """Remove ``d`` if it is queued and not started (a cancel request)."""
        try:
            self.jobs.remove(d)
        except ValueError:
            return False
        return True

    async def _serve(self) -> None:
        jobs, ex = self.jobs, self.ex
        loop = asyncio.get_running_loop()
        while True:
            while jobs:
                d = jobs.popleft()
                current_task.set(d.envelope)  # for the task's copy, and the runner's own lines about it
                ctx = contextvars.copy_context()
                try:
                    args, kwargs = ex._args(d)
                    coro = d.handler.func(*args, **kwargs)
                    fut = ctx.run(coro.send, None)
                except StopIteration as stop:
                    ex._finish(d, stop.value, None)
                    continue
                except BaseException as exc:  # noqa: BLE001 - a task's failure is data
                    ex._finish(d, None, exc)
                    continue
                # it suspended: this Task is d's from now on, and a new runner serves the queue
                self._runner = loop.create_task(self._serve()) if jobs else None
                await self._own(d, coro, ctx, fut)
                return
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _own(self, d: Delivery, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context, fut: Any) -> None:
        ex = self.ex
        task = asyncio.current_task()
        assert task is not None
        ex.running[d] = task
        try:
            value = await Resume(coro, ctx, fut)
        except asyncio.CancelledError:
            if not ex.end_cancelled(d):
                raise  # drain: the worker hands the delivery back
        except BaseException as exc:  # noqa: BLE001
            ex._finish(d, None, exc)
        else:
            ex._finish(d, value, None)
        finally:
            ex.running.pop(d, None)

