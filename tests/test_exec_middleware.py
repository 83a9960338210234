"""Middlewares and events in real worker processes against a real Redis, and their registration rules.

What a user relies on: a task's chain is app-before, task-before, task-after, app-after;
``before_execute`` hooks run in that order and the after-type hooks (``on_error``,
``on_retry``, ``after_execute``) in reverse; a middleware's per-task option is claimed by it
and any other is kept in ``task.extra`` (QTasks) with a warning naming it at registration; ``app.events.on.*`` handlers
(sync and async) fire in the worker with the keyword arguments they ask for; a
chain's next step is enqueued after a step that has middlewares; a task without
hooks runs on the plain path.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
from conftest import APPS

sys.path.insert(0, str(APPS))
from exec_helpers import pool_fixture, strings, wait_for  # noqa: E402

from qtasks_fast import QueueTasks  # noqa: E402
from qtasks_fast.canvas import chain  # noqa: E402
from qtasks_fast.depends import Depends  # noqa: E402
from qtasks_fast.middleware import Middleware  # noqa: E402

pool = pool_fixture("exec-mw", 2)


def trace(p: Any, uuid: object) -> list[str]:
    return strings(p.r.lrange(p.m.key(f"trace:{uuid}"), 0, -1))


def events(p: Any, uuid: object) -> list[str]:
    return strings(p.r.lrange(p.m.key(f"events:{uuid}"), 0, -1))


def test_hooks_run_in_chain_order_and_after_hooks_in_reverse(pool):
    m = pool.m
    rec = m.traced.add_task(4, timeout=20)
    assert rec is not None and rec.status == "success" and rec.returning == 40, rec
    # the option trace_note="!" of this task reaches every Trace middleware of its chain through ctx.task.options
    assert trace(pool, rec.uuid) == ["A.before!", "B.before!", "C.before!", "Z.before!", "call",
                                     "Z.after:success", "C.after:success", "B.after:success", "A.after:success"]
    assert events(pool, rec.uuid) == ["running:True", "success:traced:40"]


def test_error_with_retry_runs_on_error_on_retry_then_after(pool):
    m = pool.m
    task = m.traced_fail.add_task(7)
    final = m.app.wait(task.uuid, 20)  # follows the retry chain to the child's final record
    assert final is not None and final.status == "error", final
    parent = m.app.get(task.uuid)
    child = parent.retry_child_uuid
    assert child is not None and final.uuid == child and final.retry_parent_uuid == task.uuid
    assert trace(pool, task.uuid) == [
        "A.before", "B.before", "Z.before",
        "Z.on_error:LookupError", "B.on_error:LookupError", "A.on_error:LookupError",
        f"Z.on_retry:{child}", f"B.on_retry:{child}", f"A.on_retry:{child}",
        "Z.after:error", "B.after:error", "A.after:error"]
    # the child has no retries left: no on_retry, and no task_retry event
    assert trace(pool, child)[-3:] == ["Z.after:error", "B.after:error", "A.after:error"]
    assert not any(t.startswith(("Z.on_retry", "B.on_retry", "A.on_retry")) for t in trace(pool, child))
    # task_error is the final failure only: the retried attempt fires task_retry, the last one task_error
    assert events(pool, task.uuid) == ["running:True", f"retry:{child}:True"]
    assert events(pool, child) == ["running:True", "error:LookupError:True"]
    assert "LookupError: no 7" in (final.traceback or "")


def test_cancel_from_inside_a_task_reaches_after_hooks_and_the_cancel_event(pool):
    m = pool.m
    rec = m.traced_cancel.add_task("not today", timeout=20)
    assert rec is not None and rec.status == "cancel" and rec.traceback == "not today", rec
    assert trace(pool, rec.uuid) == ["A.before", "B.before", "Z.before",
                                     "Z.after:cancel", "B.after:cancel", "A.after:cancel"]
    assert events(pool, rec.uuid) == ["running:True", "cancel:not today"]


def test_before_execute_may_replace_the_arguments(pool):
    rec = pool.m.shout.add_task("quiet", timeout=20)
    assert rec is not None and rec.returning == "QUIET", rec


def test_chain_continues_after_a_step_with_middlewares(pool):
    m = pool.m
    res = chain(m.add.s(1, 2), m.double.s(), m.double.s(), app=m.app).add_task()
    final = res.wait(20)
    assert final is not None and final.status == "success" and final.returning == 12, final
    assert trace(pool, final.uuid)[:3] == ["A.before", "B.before", "Z.before"]


def test_starting_event_fired_once_per_worker_process(pool):
    pids = {c.pid for c in pool.h.children(pool.proc)}
    got = wait_for(lambda: set(strings(pool.r.lrange(pool.m.key("lifecycle"), 0, -1))), 10, "starting events")
    assert got == {f"starting:{pid}" for pid in pids}, (got, pids)


def test_a_custom_executor_decides_where_the_call_runs(pool):
    m = pool.m
    ok = m.custom_sync.add_task(1, timeout=20)
    assert ok is not None and ok.status == "success" and ok.returning == "custom_sync:2@tagging", ok
    bad = m.custom_sync.add_task(5, fail=True, timeout=20)
    assert bad is not None and bad.status == "error" and "OverflowError: 5" in bad.traceback, bad
    aok = m.custom_async.add_task(2, timeout=20)
    assert aok is not None and aok.returning == "custom_async:6", aok
    late = m.custom_async.add_task(2, 5.0, timeout=20)  # max_time=0.5 cancels the executor's run
    assert late is not None and late.status == "error" and "max_time=0.5s" in late.traceback, late


# ------------------------------------------------------------------------- registration rules
class Budget(Middleware):
    options = frozenset({"budget_ms"})

    def before_execute(self, ctx: Any) -> None:
        pass


class EnqueueOnly(Middleware):
    def before_enqueue(self, app: Any, envelope: Any) -> Any:
        return envelope


def fresh_app() -> QueueTasks:
    return QueueTasks("exec-unit", broker_url="memory://")


def test_middleware_options_are_claimed_and_others_kept_with_a_warning():
    app = fresh_app()
    warned = Warnings()
    with warned:
        @app.task(budget_ms=5)  # no middleware declares it yet: kept in extra (QTasks), named in a warning
        def f() -> None: ...

        @app.task(middlewares_before=[Budget], budget_ms=5)
        def g() -> None: ...

        @app.task(middlewares_before=[Budget()], budjet_ms=5)
        def h() -> None: ...

        app.add_middleware(Budget)

        @app.task(budget_ms=9)  # an app-wide middleware's option: claimed for every later task
        def k() -> None: ...

    assert f.extra == {"budget_ms": 5} and g.options == {"budget_ms": 5} and k.options["budget_ms"] == 9
    assert warned.lines == [
        "task 'f': option 'budget_ms' is not @app.task's nor declared by a middleware of its chain: kept in "
        "task.extra for plugins",
        "task 'h': option 'budjet_ms' is not @app.task's nor declared by a middleware of its chain: kept in "
        "task.extra for plugins; did you mean 'budget_ms'?"]
    with pytest.raises(TypeError, match="not a qtasks_fast.middleware.Middleware"):
        app.task(middlewares_after=[object])(lambda: None)


class Warnings(logging.Handler):
    """The WARNING lines of ``qtasks_fast.task`` while in the ``with`` block."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> Warnings:
        logging.getLogger("qtasks_fast.task").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("qtasks_fast.task").removeHandler(self)


def test_option_values_that_could_only_fail_in_a_worker_are_refused():
    app = fresh_app()
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="concurrency_limit must be an int >= 1"):
            app.task(name=f"c{bad!r}", concurrency_limit=bad)(lambda: None)
    assert app.task(name="ok", concurrency_limit=3)(lambda: None).concurrency_limit == 3
    with pytest.raises(ValueError, match="executor='process' runs sync functions"):
        @app.task(executor="process")
        async def a() -> None: ...
    with pytest.raises(ValueError, match="cannot fill Depends/State"):
        @app.task(executor="process")
        def b(x: int = Depends(lambda: 1)) -> None: ...
    with pytest.raises(ValueError, match="executor must be one of"):
        app.task(name="e", executor="fork")(lambda: None)
    with pytest.raises(TypeError, match="or a TaskExecutor"):
        app.task(name="e2", executor=object())(lambda: None)
    with pytest.raises(TypeError, match="retry_on_exc takes exception classes"):
        app.task(name="r", retry_on_exc=["ValueError"])(lambda: None)
    assert app.task(name="bo", retry_backoff=True)(lambda: None).retry_backoff == 1.0


def test_a_task_without_hooks_takes_the_plain_path_until_a_hook_appears():
    app = fresh_app()

    @app.task
    def plain(x: int) -> int:
        return x

    @app.task(middlewares_before=[EnqueueOnly])
    def producer_only(x: int) -> int:
        return x

    assert not plain.needs_hooks() and not producer_only.needs_hooks()  # no worker hook: plain path
    assert producer_only.has_enqueue_hooks and not plain.has_enqueue_hooks

    @app.events.on.task_error
    def seen(uuid: str) -> None: ...

    assert plain.needs_hooks()  # a task event handler registered later is seen by tasks already planned
    app2 = fresh_app()

    @app2.task
    def other(x: int) -> int:
        return x

    assert not other.needs_hooks()
    app2.add_middleware(Budget, position="after")
    assert other.needs_hooks() and [type(m) for m in other.middlewares] == [Budget]


def test_events_pass_each_handler_the_keywords_it_names_and_survive_a_failing_one():
    import asyncio

    app = fresh_app()
    got: list[Any] = []

    @app.events.on.task_success
    def named(uuid: str, result: Any) -> None:
        got.append(("named", uuid, result))

    @app.events.on.task_success()
    def broken(**kw: Any) -> None:
        raise RuntimeError("a handler bug")

    @app.events.on.task_success
    async def later(**kw: Any) -> None:
        got.append(("async", sorted(kw)))

    pending = app.events.fire("task_success", uuid="u1", result=3, task_name="t")
    assert pending is not None and got == []  # an async handler: all run, in order, when awaited
    asyncio.run(pending)  # type: ignore[arg-type]
    assert got == [("named", "u1", 3), ("async", ["event", "result", "task_name", "uuid"])]  # broken: logged
    sync_only = fresh_app()
    sync_only.events.on.task_error(lambda uuid: got.append(("sync", uuid)))
    assert sync_only.events.fire("task_error", uuid="u2", exc=None) is None and got[-1] == ("sync", "u2")
    assert app.events.fire("task_error", uuid="u3") is None  # no handler: nothing to await
    with pytest.raises(AttributeError, match="no event 'task_done'; events are: task_running"):
        app.events.on.task_done()
