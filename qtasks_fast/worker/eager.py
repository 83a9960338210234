"""Async tasks that finish without suspending run without an asyncio Task of their own.

Why: a no-op ``async def`` task costs a worker more as an asyncio Task (create, schedule, one
loop turn, step, done callback) than everything else it does between Redis and the task function;
and many tasks of a busy service return without awaiting anything slow. Python 3.12 calls this an
eager task; on 3.11 it has to be built by hand.

How, without breaking what task code may rely on: a *runner* (an ordinary asyncio Task) starts the
queued coroutines one after another. Each first step runs in a fresh copy of the contextvars
context, as a Task of its own would. A coroutine that finishes in that step is done. One that
suspends keeps that runner Task as its own until it ends, so ``asyncio.current_task()``,
``asyncio.timeout()`` and cancellation see one and the same Task from its first line to its last,
and no other task runs in it meanwhile; a new runner takes over the queue. When the task ends, its
runner goes back to the queue (unless a cancel was requested on that Task: its ``cancelling()``
count would reach the next task's ``asyncio.timeout()``). The only difference a task can notice:
the Task object it sees is shared with other tasks that ran in that runner before or after it
(done callbacks a task adds to ``asyncio.current_task()`` run when the runner ends, not the task).

Why runners are reused (issue 16, io-redis): a task that awaits one command used to cost a runner
Task of its own (create, schedule, first step, done): ~10 % of a worker's instructions per task.
A runner that finishes a task now counts itself among the runners about to take work before the
outcome is handed on, so the next task the finished one frees a slot for starts in the same Task,
in the same loop turn, and no Task is made for it.

Runners start a loop turn after they are created, so one runner at a time would start one suspending
task per loop turn: a batch of tasks that each await I/O would send their commands over as many turns,
their replies would trickle back one per turn, and each turn's few finished tasks would make a settle of
their own (issue 16: io-redis, 0.3 settles per task instead of 0.04; worker CPU +60 % per task). So when
a task suspends, the runner starts as many new runners as there are queued tasks no runner is about to
take: a batch of suspending tasks starts within two loop turns, as with a Task each, while tasks that
finish at once still run one after another in a single runner (a runner that finds the queue empty
ends, unless none is left waiting for the next one).

Tasks with ``max_time`` do not come here (their deadline needs a Task of their own from the start).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtasks_fast._corelib import load_compiled
from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.worker.executor import Executor

#: the per-task loop, compiled (``_run.pyx``; its source as Python when asked or when no extension exists)
run_core, COMPILED = load_compiled("qtasks_fast.worker._run", Path(__file__).with_name("_run.pyx"))
if TYPE_CHECKING:
    from qtasks_fast.worker._run import RunState
else:
    #: the Worker's per-task fields, typed (its base class; see ``_run.pyx``)
    RunState = run_core.RunState
log = get_logger("worker")


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



#: runners are reused after their task ends only where a Task tells whether a cancel was requested on it
#: (``Task.cancelling()``, Python 3.11+); on 3.10 each runner that owned a suspending task ends with it, as before
REUSE = hasattr(asyncio.Task, "cancelling")


class EagerRunners:
    """The queue of async tasks to start, and the runner Tasks serving it (see the module doc)."""

    def __init__(self, executor: Executor) -> None:
        self.ex = executor
        self.jobs: deque[Delivery] = deque()
        #: runners that own no task: created and not started yet, starting tasks, or the idle one
        self._runners: set[asyncio.Task[None]] = set()
        #: the idle runner's wake-up (None while no runner waits for work)
        self._waiter: asyncio.Future[None] | None = None
        #: set by :meth:`close`: a runner whose task ends then ends too
        self.closed = False

    #: queue a delivery; wake the idle runner or start one (compiled: ``_run.queue_job``)
    submit = run_core.queue_job

    def _spawn(self, n: int) -> None:
        create = asyncio.get_running_loop().create_task
        for _ in range(n):
            self._runners.add(create(self._serve()))

    def close(self) -> None:
        """Worker stop: end the runners that own no task (a runner that owns a task ends with it)."""
        self.closed = True
        runners, self._runners = self._runners, set()
        for runner in runners:
            runner.cancel()

    def take(self, d: Delivery) -> bool:
        """Remove ``d`` if it is queued and not started (a cancel request)."""
        try:
            self.jobs.remove(d)
        except ValueError:
            return False
        return True

    async def _serve(self) -> None:
        jobs = self.jobs
        me: Any = asyncio.current_task()  # this runner, while it owns no task
        loop = asyncio.get_running_loop()
        run_ready = run_core.run_ready
        while True:
            # the tasks that finish in their first step are run and finished there (compiled, _run.pyx)
            suspended = run_ready(jobs, self.ex, log) if jobs else None
            if suspended is not None:
                d, coro, ctx, fut = suspended
                # it suspended: this Task is d's from now on; enough new runners for what is queued (module doc)
                runners = self._runners
                runners.discard(me)
                if len(jobs) > len(runners):
                    self._spawn(len(jobs) - len(runners))
                if not await self._own(d, coro, ctx, fut, me):
                    return
                continue  # d is done and this Task is clean: it serves the queue again (module doc)
            if self._waiter is not None:  # another runner already waits for the next task: this one ends
                self._runners.discard(me)
                return
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _own(self, d: Delivery, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context, fut: Any,
                   task: Any) -> bool:
        """Run the rest of ``d`` in this runner ``task`` and finish it. True when the runner may serve the queue
        again: ``d`` ended without a cancel request on the Task (its ``cancelling()`` count is what
        ``asyncio.timeout()`` reads in the next task) and the runners are not closed; it is then counted among the
        runners about to take a task before ``d``'s outcome starts the next one, so no new runner is made for it."""
        ex = self.ex
        ex.running[d] = task
        value: Any = None
        error: BaseException | None = None
        try:
            value = await Resume(coro, ctx, fut)
        except asyncio.CancelledError:
            if not ex.end_cancelled(d):
                raise  # drain: the worker hands the delivery back
            return False
        except BaseException as exc:  # noqa: BLE001
            error = exc
        finally:
            ex.running.pop(d, None)
        again = REUSE and not self.closed and not task.cancelling()
        if again:
            self._runners.add(task)
        ex._finish(d, value, error)
        if again and task.cancelling():  # cancelled while finishing d: it ends, the queue needs another runner
            self._runners.discard(task)
            if self.jobs and not self._runners and not self.closed:
                self._spawn(1)
            return False
        return again
