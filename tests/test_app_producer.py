"""The producer side of issue 4 against a real Redis, without workers: what ``add_task`` sends.

What a user relies on: a ``TaskManager`` sees every call the app sends (add_task, bulk, chain,
group, restart) and what it changes is what gets recorded, validated like the caller's own
arguments; ``add_middleware`` puts app middlewares before or after a task's own, in that order
at every enqueue; ``unique=`` returns the task holding the key until its ttl runs out; a task
parameter named like an ``add_task`` option is passed with the signature form; routers and
shared tasks register where QTasks registers them; the control wrappers reach the broker.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from apps.testkit import forget_shared_tasks

from qtasks_fast import QueueTasks, Router, TaskArgumentsError, chain, group, router, shared_task
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.components.task_manager import PendingTask, TaskManager
from qtasks_fast.middleware import Middleware
from qtasks_fast.schemas import META_CHAIN, META_GROUP, META_RESTART_OF


@pytest.fixture
def app(redis_url, app_name):
    a = QueueTasks(app_name, broker_url=redis_url)

    @a.task
    def add(a: int, b: int) -> int:
        return a + b

    @a.task(priority=5, max_time=2.0, retry=1)
    def heavy_task(n: int, *, mode: str = "plain") -> int:
        return n

    return a


class Recorder(TaskManager):
    """Keeps what it saw, and changes heavy_task like a policy would."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list, dict]] = []

    def mutate(self, task: PendingTask) -> PendingTask:
        self.seen.append((task.name, list(task.args), dict(task.meta)))
        if task.name == "heavy_task":
            task.timeout, task.priority, task.queue, task.retry = 120, 1, "heavy", 3
            task.args = [str(task.args[0] * 2)]     # a str: validation converts it back to int
            task.kwargs["mode"] = "mutated"
            task.countdown = 60
        return task


def test_task_manager_sees_every_call_and_its_changes_are_what_is_sent(app):
    manager = Recorder()
    app.config.task_manager = manager
    sent = app.add_task("heavy_task", 21)
    mutated = (1, "heavy", (42,), {"mode": "mutated"}, 3)
    assert (sent.priority, sent.queue, sent.args, sent.kwargs, sent.retry) == mutated
    stored = app.get(sent.uuid)  # "heavy" joined the queues the app looks in
    assert (stored.priority, stored.queue, stored.args, stored.kwargs) == (1, "heavy", (42,), {"mode": "mutated"})
    env, _ = app.build("heavy_task", [1], {})
    assert env.timeout == 120 and env.retry == 3  # the run-time limit the worker enforces
    assert 55 < env.eta - time.time() <= 60
    assert app.build("add", [1, 2], {})[0].timeout is None  # other tasks untouched

    manager.seen.clear()
    app.add_tasks([app.tasks["add"].s(i, i) for i in range(3)])
    chain(app.tasks["add"].s(1, 2), app.tasks["add"].s(3), app=app).add_task()
    group(app.tasks["add"].s(1, 1), app.tasks["heavy_task"].s(2), app=app).add_task()
    restarted = app.restart(sent.uuid)
    names = [name for name, _, _ in manager.seen]
    assert names == ["add"] * 3 + ["add"] + ["add", "heavy_task"] + ["heavy_task"]
    assert META_CHAIN in manager.seen[3][2] and META_GROUP in manager.seen[4][2]
    assert manager.seen[6][2] == {META_RESTART_OF: str(sent.uuid)}
    assert restarted.uuid != sent.uuid and restarted.args == (84,)  # the manager applies to the restart too

    class Wrong(TaskManager):
        def mutate(self, task):
            if task.name == "add":
                task.args = ["not a number", 1]
            else:
                return None
            return task

    app.config.task_manager = Wrong()
    with pytest.raises(TaskArgumentsError, match="add"):
        app.add_task("add", 1, 2)
    with pytest.raises(TypeError, match="end it with `return task`"):
        app.add_task("heavy_task", 1)


def test_add_middleware_orders_app_and_task_middlewares_at_enqueue(app):
    calls: list[str] = []

    class Trace(Middleware):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def before_enqueue(self, app, envelope):
            calls.append("before:" + self.tag)
            if self.tag == "app-after":
                envelope.priority = 7  # what the last before_enqueue leaves is what is sent
            return envelope

        def after_enqueue(self, app, envelope):
            calls.append("after:" + self.tag)

    app.add_middleware(Trace, position="after", tag="app-after")
    first = app.add_middleware(Trace("app-before"))
    assert app.middlewares_before == [first]

    @app.task(middlewares_before=[Trace("task-before")], middlewares_after=[Trace("task-after")])
    def traced(x: int) -> int:
        return x

    sent = traced.add_task(1)
    assert calls == ["before:app-before", "before:task-before", "before:task-after", "before:app-after",
                     "after:app-after", "after:task-after", "after:task-before", "after:app-before"]
    assert sent.priority == 7 and app.get(sent.uuid).priority == 7
    calls.clear()
    app.add_task("add", 1, 2)  # a task without its own middlewares still gets the app's
    assert calls == ["before:app-before", "before:app-after", "after:app-after", "after:app-before"]

    with pytest.raises(ValueError, match="position"):
        app.add_middleware(Trace, position="middle", tag="x")
    with pytest.raises(TypeError, match="pass the class"):
        app.add_middleware(Trace("y"), tag="z")


def test_unique_returns_the_holder_until_the_ttl_runs_out(app):
    first = app.add_task("add", 1, 2, unique=("sum-job", 1.0))
    again = app.add_task("add", 5, 5, unique=("sum-job", 1.0))
    assert again.uuid == first.uuid and again.args == (1, 2)  # the holder's record, nothing new sent
    other = app.add_task("add", 5, 5, unique="other-key")  # a plain key: config.unique_ttl
    assert other.uuid != first.uuid

    async def from_async_client():
        aapp = AsyncQueueTasks(app.name, broker_url=app.broker_url)
        return await aapp.add_task("add", 9, 9, unique=("sum-job", 1.0))

    assert asyncio.run(from_async_client()).uuid == first.uuid
    time.sleep(1.1)  # the key's ttl itself is what is under test
    after = app.add_task("add", 5, 5, unique=("sum-job", 1.0))
    assert after.uuid != first.uuid and after.args == (5, 5) and app.get(after.uuid).status == "new"

    class OnePerBatch(TaskManager):
        def mutate(self, task):
            task.unique = "bulk-" + app.name  # a plain key: config.unique_ttl
            return task

    app.config.task_manager = OnePerBatch()
    bulk = app.add_tasks([app.tasks["add"].s(i, i) for i in range(3)])
    assert len({t.uuid for t in bulk}) == 1 and bulk[2].args == (0, 0)  # the first holds the key

    with pytest.raises(ValueError, match="unique"):
        app.add_task("add", 1, 2, unique=("", 5))
    with pytest.raises(TypeError, match="not both"):
        app.add_task("add", 1, 2, countdown=1, eta=time.time() + 5)


def test_option_names_as_task_parameters_go_through_the_signature_form(app):
    @app.task
    def schedule(*, countdown: int, unique: str) -> str:
        return f"{countdown}:{unique}"

    sent = app.add_task(schedule.s(countdown=3, unique="u"), countdown=0.5)
    record = app.get(sent.uuid)
    assert record.kwargs == {"countdown": 3, "unique": "u"} and record.status == "new"
    assert app.build(*schedule.s(countdown=3, unique="u"))[0].eta == 0.0  # the option stayed the task's
    with pytest.raises(TypeError, match="put every argument"):
        app.add_task(schedule.s(countdown=1, unique="u"), 2)


def test_router_and_shared_tasks_register_like_qtasks(redis_url, app_name):
    routes = Router(queue="mail")

    @routes.task(max_time=9)
    def send_mail(to: str) -> str:
        return to

    with pytest.raises(RuntimeError, match="include_router"):
        send_mail.add_task("x")
    assert send_mail("direct") == "direct"  # still the plain function

    before = set(router._shared)
    try:
        @shared_task(name=f"{app_name}_early")
        def early() -> int:
            return 1

        a1 = QueueTasks(app_name, broker_url=redis_url)

        @a1.task(name=f"{app_name}_late")
        def own() -> int:  # the app's own task wins over a shared one of the same name
            return 2

        @shared_task(name=f"{app_name}_late")
        def late() -> int:
            return 3

        a1.include_router(routes)
        a1.include_router(routes)  # twice: no-op

        @routes.task
        def after_include(x: int) -> int:  # declared after the include: joins the app too
            return x

        assert {f"{app_name}_early", f"{app_name}_late", "send_mail", "after_include"} <= set(a1.tasks)
        assert a1.tasks[f"{app_name}_late"] is own and a1.routers == [routes]
        assert send_mail.queue == "mail" and send_mail.max_time == 9 and send_mail.task_func.app is a1
        sent = send_mail.add_task("bob")
        assert sent.queue == "mail" and a1.get(sent.uuid).args == ("bob",)

        a2 = QueueTasks(app_name + "b", broker_url=redis_url)  # created later: the main app now
        assert early.task_func.app is a2 and early.add_task().task_name == f"{app_name}_early"
        assert late.task_func.app is a2  # a1 kept its own task, a2 has the shared one
        with pytest.raises(ValueError, match="already registered"):
            a1.task(name="send_mail")(lambda: None)
    finally:
        forget_shared_tasks(before)


def test_control_wrappers_reach_the_broker(app):
    delayed = app.add_task("add", 1, 2, countdown=60)
    queued = app.add_task("add", 3, 4)
    assert app.cancel(delayed.uuid, reason="not needed") == "queued"
    assert app.get(delayed.uuid).status == "cancel"
    assert app.purge("default") >= 1 and app.get(queued.uuid).status == "cancel"
    assert app.dlq_list() == [] and app.dlq_requeue() == 0 and app.dlq_purge() == 0
    assert app.cancel("00000000-0000-0000-0000-000000000000") == "unknown"

    async def from_async_client():
        aapp = AsyncQueueTasks(app.name, broker_url=app.broker_url)
        t = await aapp.add_task("add", 5, 6)
        return await aapp.cancel(t.uuid), await aapp.purge("default"), await aapp.dlq_list("default")

    assert asyncio.run(from_async_client()) == ("queued", 0, [])
    assert app.events is not None and hasattr(app.events, "on")

    @app.periodic(every=60)
    def tick() -> str:
        return "tick"

    assert app.tasks["tick"] is tick and app.periodic("add", every=30, args=(1, 2)).task_name == "add"
    with pytest.raises(TaskArgumentsError):
        app.periodic("add", every=30, args=("x",))  # checked when scheduled, not at the first tick


def test_a_burst_of_async_calls_shares_a_capped_set_of_connections(private_redis) -> None:
    """500 concurrent add_task calls all succeed on at most max_connections connections to Redis."""
    import asyncio

    import redis

    from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks

    app = AsyncQueueTasks("burst", broker_url=private_redis.url)
    app.task(name="noop")(_noop)
    app.broker.conn.max_connections = 4
    watcher = redis.Redis.from_url(private_redis.url)

    async def burst() -> tuple[list[object], int]:
        await app.add_task("noop")  # the first call also loads the Lua script
        before = len(watcher.client_list())
        tasks = list(await asyncio.gather(*(app.add_task("noop") for _ in range(500))))
        return tasks, len(watcher.client_list()) - before

    tasks, opened = asyncio.run(burst())
    assert len({str(t.uuid) for t in tasks}) == 500  # type: ignore[attr-defined]
    assert watcher.xlen("qtf:{burst:default}:s:0") == 501
    assert opened <= 4, [c["cmd"] for c in watcher.client_list()]


async def _noop() -> None:
    return None
