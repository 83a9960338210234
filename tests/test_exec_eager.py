"""Async tasks start without an asyncio Task of their own (``qtasks_fast.worker.eager``); what task code
sees must not change: its own contextvars, one ``current_task()`` from first line to last, a working
``asyncio.timeout()``, cancellation, errors and results, and order among many short tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from typing import Any

import msgspec
import pytest

from qtasks_fast import QueueTasks
from qtasks_fast._corelib import Delivery
from qtasks_fast.schemas import Envelope
from qtasks_fast.testing import WorkerThread

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


def make_app() -> QueueTasks:
    app = QueueTasks(f"eager{time.monotonic_ns()}", broker_url="memory://")

    @app.task(name="set_var")
    async def set_var(value: str) -> str:
        before = VAR.get()
        VAR.set(value)  # returns without suspending: the next task must not see this
        return before

    @app.task(name="same_task")
    async def same_task() -> bool:
        first = asyncio.current_task()
        await asyncio.sleep(0.01)
        second = asyncio.current_task()
        await asyncio.sleep(0)
        return first is second and first is asyncio.current_task()

    @app.task(name="inner_timeout")
    async def inner_timeout() -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out inside"
        return "no timeout"

    @app.task(name="fails_at_once")
    async def fails_at_once() -> None:
        raise ValueError("bad at first step")

    @app.task(name="fails_later")
    async def fails_later() -> None:
        await asyncio.sleep(0.01)
        raise KeyError("bad after await")

    @app.task(name="double")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(name="hang")
    async def hang() -> None:
        await asyncio.sleep(30)

    return app


def test_tasks_that_finish_at_once_keep_contextvars_apart() -> None:
    app = make_app()
    with WorkerThread(app, concurrency=10):
        tasks = app.add_tasks([app.tasks["set_var"].s(f"v{i}") for i in range(50)])
        results = [app.wait(t.uuid, 10) for t in tasks]
    assert all(r is not None and r.status == "success" for r in results), results
    assert {r.returning for r in results if r is not None} == {"unset"}


def test_suspending_task_sees_one_current_task_and_its_own_timeout() -> None:
    app = make_app()
    with WorkerThread(app, concurrency=10):
        same = app.add_tasks([app.tasks["same_task"].s() for _ in range(20)])
        inner = app.add_task("inner_timeout", timeout=10)
        results = [app.wait(t.uuid, 10) for t in same]
    assert all(r is not None and r.status == "success" and r.returning is True for r in results), results
    assert inner is not None and inner.status == "success" and inner.returning == "timed out inside", inner


def test_errors_at_first_step_and_after_an_await_fail_only_their_task() -> None:
    app = make_app()
    with WorkerThread(app, concurrency=4):
        now = app.add_task("fails_at_once", timeout=10)
        later = app.add_task("fails_later", timeout=10)
        ok = app.add_tasks([app.tasks["double"].s(i) for i in range(200)])
        results = [app.wait(t.uuid, 10) for t in ok]
    assert now is not None and now.status == "error" and "bad at first step" in (now.traceback or ""), now
    assert later is not None and later.status == "error" and "bad after await" in (later.traceback or ""), later
    assert [r.returning for r in results if r is not None and r.status == "success"] == [2 * i for i in range(200)]


def _running(app: Any, name: str) -> Any:
    """A task of ``name`` sent and seen running (status ``process``) within 10 s."""
    task = app.add_task(name)
    deadline = time.monotonic() + 10
    while (rec := app.get(task.uuid)) is None or rec.status != "process":
        assert time.monotonic() < deadline, rec
        time.sleep(0.01)
    return task


def test_cancel_reaches_a_suspended_task_and_a_queued_one() -> None:
    app = make_app()
    with WorkerThread(app, concurrency=10):
        running = _running(app, "hang")
        assert app.cancel(running.uuid, "stop it") == "running"
        rec = app.wait(running.uuid, 10)
        after = app.add_task("double", 21, timeout=10)
    assert rec is not None and rec.status == "cancel" and "stop it" in (rec.traceback or ""), rec
    assert after is not None and after.returning == 42, after


class _Handler:
    """The fields of a TaskFunc the runners read: a plain call (no echo ``self``, no argument validator)."""

    def __init__(self, func: object) -> None:
        self.func, self.echo, self._validator = func, False, None


def _Job(func: object, n: int) -> Delivery:  # noqa: N802
    """A Delivery of an Envelope (what a worker queues; the compiled loop takes no other types) with the two fields
    the runners read."""
    d = Delivery("default", 0, b"%d-0" % n, b"", 1)
    d.handler = _Handler(func)  # type: ignore[assignment]
    d.envelope = Envelope(uuid=str(uuid.uuid4()), task_name=f"job{n}")
    return d


class _Executor:
    """What EagerRunners calls back: arguments, outcomes (a plain success comes encoded, through ``on_done``), the
    running map."""

    validate = False

    def __init__(self) -> None:
        self.running: dict[object, asyncio.Task[None]] = {}
        self.finished: list[tuple[object, object, object]] = []

    def on_done(self, outcome: tuple[object, ...], followups: object) -> None:
        d, status, encoded = outcome[:3]
        assert status == "success" and followups == []
        self.finished.append((d, msgspec.msgpack.decode(encoded), None))  # type: ignore[arg-type]

    def _args(self, d: object) -> tuple[tuple[()], dict[str, object]]:
        return (), {}

    def _finish(self, d: object, value: object, exc: object) -> None:
        self.finished.append((d, value, exc))

    def end_cancelled(self, d: object) -> bool:
        return False


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_batch_of_suspending_tasks_starts_together_not_one_per_loop_turn() -> None:
    """Tasks that each await I/O must all be under way at once: started one per loop turn, their commands went
    out over as many turns and their results came back one per turn (a settle each), issue 16."""
    from qtasks_fast.worker.eager import EagerRunners

    ex = _Executor()
    runners = EagerRunners(ex)  # type: ignore[arg-type]
    release = asyncio.get_running_loop().create_future()
    started: list[int] = []

    def awaiting(n: int):  # type: ignore[no-untyped-def]
        async def body() -> int:
            started.append(n)
            await release
            return n
        return body

    for n in range(40):
        runners.submit(_Job(awaiting(n), n))  # type: ignore[arg-type]
    await _turns(3)
    assert sorted(started) == list(range(40))
    assert len(ex.running) == 40  # each suspended one owns a Task of its own
    release.set_result(None)
    await _turns(3)
    assert sorted(v for _, v, _ in ex.finished) == list(range(40)) and not ex.running
    runners.close()


async def test_tasks_that_finish_at_once_share_one_runner() -> None:
    from qtasks_fast.worker.eager import EagerRunners

    ex = _Executor()
    runners = EagerRunners(ex)  # type: ignore[arg-type]
    before = len(asyncio.all_tasks())

    async def quick() -> str:
        return "done"

    for n in range(100):
        runners.submit(_Job(quick, n))  # type: ignore[arg-type]
    assert len(asyncio.all_tasks()) - before == 1  # one runner for the whole queue
    await _turns(2)
    assert len(ex.finished) == 100 and all(v == "done" for _, v, _ in ex.finished)
    # mixed: one suspends, the rest finish at once; all run, and what is left when the queue is empty is one
    # idle runner, which close() ends
    gate = asyncio.get_running_loop().create_future()

    async def slow() -> str:
        await gate
        return "slow"

    runners.submit(_Job(slow, -1))  # type: ignore[arg-type]
    for n in range(20):
        runners.submit(_Job(quick, n))  # type: ignore[arg-type]
    await _turns(3)
    gate.set_result(None)
    await _turns(3)
    assert len(ex.finished) == 121 and ("slow" in {v for _, v, _ in ex.finished})
    assert len(asyncio.all_tasks()) - before == 1
    runners.close()
    await _turns(2)
    assert len(asyncio.all_tasks()) == before


def test_after_a_cancelled_task_the_next_one_times_out_and_is_cancelled_as_its_own() -> None:
    """One slot, so each task may run in the Task that ran the one before: a cancel of one task must not reach the
    next (its ``asyncio.timeout()`` reads the Task's cancel count), and a cancel of the next still works."""
    app = make_app()
    with WorkerThread(app, concurrency=1):
        for _ in range(2):
            running = _running(app, "hang")
            assert app.cancel(running.uuid, "stop it") == "running"
            rec = app.wait(running.uuid, 10)
            assert rec is not None and rec.status == "cancel", rec
            inner = app.add_task("inner_timeout", timeout=10)
            same = app.add_task("same_task", timeout=10)
            assert inner is not None and inner.returning == "timed out inside", inner
            assert same is not None and same.status == "success" and same.returning is True, same


@pytest.mark.parametrize("reuse", [True, False], ids=["reused", "python-3.10"])
async def test_a_runner_whose_task_ended_starts_the_next_one_itself(reuse: bool, monkeypatch: Any) -> None:
    """A suspending task that frees its slot for the next (the worker's ``task_done`` starts it from the backlog)
    hands the next one its runner: no new asyncio Task per task (issue 16, io-redis). Where a Task cannot tell
    whether a cancel was requested on it (Python 3.10: no ``Task.cancelling``), each task still runs to its end,
    in a runner of its own."""
    from qtasks_fast.worker import eager
    from qtasks_fast.worker.eager import EagerRunners

    monkeypatch.setattr(eager, "REUSE", reuse)

    ex = _Executor()
    runners = EagerRunners(ex)  # type: ignore[arg-type]
    seen: list[object] = []
    gates = [asyncio.get_running_loop().create_future() for _ in range(30)]

    def awaiting(n: int):  # type: ignore[no-untyped-def]
        async def body() -> int:
            seen.append(asyncio.current_task())
            await gates[n]
            return n
        return body

    def finish(d: object, value: object, exc: object) -> None:  # as task_done: the next task takes the slot
        ex.finished.append((d, value, exc))
        if isinstance(value, int) and value + 1 < len(gates):
            runners.submit(_Job(awaiting(value + 1), value + 1))  # type: ignore[arg-type]

    ex._finish = finish  # type: ignore[method-assign]
    runners.submit(_Job(awaiting(0), 0))  # type: ignore[arg-type]
    before = len(asyncio.all_tasks())
    for gate in gates:
        await _turns(2)
        gate.set_result(None)
    await _turns(3)
    assert [v for _, v, _ in ex.finished] == list(range(30))
    if reuse:
        assert len({id(t) for t in seen}) == 1  # one runner ran all 30, one after another
    else:
        assert len({id(t) for t in seen}) > 1  # the runner ended with its task: the next ran in another
    assert len(asyncio.all_tasks()) <= before
    runners.close()
