"""QTasks' ``qtasks.exc``, ``qtasks.events`` and ``qtasks.routers`` under qtasks_fast, used as QTasks code uses them."""

from __future__ import annotations

import asyncio
from typing import Any

from qtasks_fast import QueueTasks, TaskCancel
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.events import AsyncEvents, SyncEvents
from qtasks_fast.exc import TaskCancelError, TaskPluginTriggerError
from qtasks_fast.routers import AsyncRouter, SyncRouter
from qtasks_fast.testing import WorkerThread


def test_task_cancel_error_cancels_and_is_what_ctx_cancel_raises(app_name: str) -> None:
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def refuse(why: str) -> None:
        raise TaskCancelError(why)

    @app.task(echo=True)
    def catches(self: Any) -> str:
        try:
            self.ctx.cancel("asked")
        except TaskCancelError as exc:  # QTasks code catches ctx.cancel under this name
            return f"caught {exc}"
        return "not raised"

    with WorkerThread(app):
        refused = refuse.add_task("no stock", timeout=10)
        caught = catches.add_task(timeout=10)
    assert refused is not None and refused.status == "cancel" and refused.traceback == "no stock"
    assert caught is not None and caught.returning == "caught asked"
    assert issubclass(TaskCancelError, RuntimeError) and issubclass(TaskCancelError, TaskCancel)
    assert TaskPluginTriggerError("x", retry=2).kwargs == {"retry": 2}


def test_sync_events_run_handlers_written_for_qtasks(app_name: str) -> None:
    events = SyncEvents()
    app = QueueTasks(app_name, broker_url="memory://", events=events)
    seen: list[tuple[str, Any]] = []

    @app.events.on.worker_running()  # QTasks registers with a call
    def running(worker: Any, number: int) -> None:
        seen.append(("worker_running", number))

    @app.events.on.task_running()
    def started(task_func: Any, task_broker: Any) -> None:
        seen.append(("task_running", (task_func.name, list(task_broker.args))))

    @app.events.on.task_stopping()
    def stopped(task_func: Any, task_broker: Any, model: Any) -> None:
        seen.append(("task_stopping", (model.status, model.returning, str(model.uuid) == str(task_broker.uuid))))

    @app.events.on.worker_stopping()
    def leaving(worker: Any) -> None:
        seen.append(("worker_stopping", None))

    @app.task
    def double(x: int) -> int:
        return 2 * x

    @app.task
    def fails() -> None:
        raise KeyError("gone")

    assert app.events is events
    with WorkerThread(app):
        assert double.add_task(21, timeout=10) is not None
        assert fails.add_task(timeout=10) is not None
    assert seen[0] == ("worker_running", 0) and seen[-1] == ("worker_stopping", None)
    assert ("task_running", ("double", [21])) in seen and ("task_stopping", ("success", 42, True)) in seen
    assert ("task_stopping", ("error", None, True)) in seen


def test_event_handlers_with_qtasks_full_signatures(app_name: str) -> None:
    """QTasks' starter and worker fire ``starting(starter, worker, broker)`` and ``task_running(worker,
    task_func, task_broker)``: handlers requiring every one of those arguments run, given our objects."""
    from qtasks_fast.worker.worker import Worker

    app = AsyncQueueTasks(app_name, broker_url="memory://", events=AsyncEvents())
    seen: list[tuple[str, Any]] = []

    @app.events.on.starting()
    async def on_starting(starter: Any, worker: Any, broker: Any) -> None:
        seen.append(("starting", starter is worker and isinstance(worker, Worker) and broker is worker.broker))

    @app.events.on.stopping()
    async def on_stopping(starter: Any, worker: Any, broker: Any) -> None:
        seen.append(("stopping", starter is worker))

    @app.events.on.task_running()
    async def on_task_running(worker: Any, task_func: Any, task_broker: Any) -> None:
        seen.append(("task_running", (isinstance(worker, Worker), task_func.name, list(task_broker.args))))

    @app.events.on.task_stopping()
    def on_task_stopping(worker: Any, task_func: Any, task_broker: Any, model: Any) -> None:
        seen.append(("task_stopping", (isinstance(worker, Worker), model.returning)))

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    async def call() -> Any:
        return await double.add_task(21, timeout=10)

    with WorkerThread(app):
        assert asyncio.run(call()) is not None
    assert seen[0] == ("starting", True) and seen[-1] == ("stopping", True), seen
    assert ("task_running", (True, "double", [21])) in seen and ("task_stopping", (True, 42)) in seen, seen


async def test_async_events_fire_is_awaitable_with_positional_args() -> None:
    events = AsyncEvents()
    got: list[Any] = []

    @events.on.task_success()
    async def async_handler(*args: Any, **kw: Any) -> None:
        got.append(("async", args, kw))

    @events.on.task_success
    def sync_handler(*args: Any, **kw: Any) -> None:
        got.append(("sync", args, kw))

    await events.fire("task_success", 1, result=2)
    await events.fire("stopping")  # no handler: still awaitable
    assert got == [("async", (1,), {"result": 2, "event": "task_success"}),
                   ("sync", (1,), {"result": 2, "event": "task_success"})]


def test_sync_router_tasks_run_in_the_app(app_name: str) -> None:
    router = SyncRouter()

    @router.task(priority=2)
    def greet(name: str) -> str:
        return f"hi {name}"

    app = QueueTasks(app_name, broker_url="memory://")
    app.include_router(router)
    assert app.routers == [router] and app.tasks["greet"].priority == 2
    with WorkerThread(app):
        done = greet.add_task("ann", timeout=10)
    assert done is not None and done.returning == "hi ann"


async def test_async_router_tasks_run_in_the_async_app(app_name: str) -> None:
    router = AsyncRouter()

    @router.task
    async def shout(text: str) -> str:
        return text.upper()

    app = AsyncQueueTasks(app_name, broker_url="memory://")
    app.include_router(router)
    with WorkerThread(app):
        done = await shout.add_task("hey", timeout=10)
    assert done is not None and done.returning == "HEY"
