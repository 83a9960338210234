"""The echo context (``self.ctx`` of an ``echo=True`` task) has QTasks' ``get_config``, ``get_task``, ``sleep``,
``get_component`` and ``plugin_error`` (issue 11).

What a user relies on: a QTasks task body that reads the app's config, looks another task up, sleeps, reaches
a component or raises a plugin error runs unchanged, in a plain task (blocking calls) and in an ``async def``
task (coroutines to await), for the sync and the async client.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread


def build(app: Any) -> Any:
    app.config.result_ttl = 1234.0

    @app.task
    def other(x: int) -> int:
        return x * 2

    @app.task(echo=True)
    def sync_body(self: Any, other_uuid: str) -> dict[str, Any]:
        ctx = self.ctx
        ctx.sleep(0.01)
        found = ctx.get_task(other_uuid)
        if asyncio.iscoroutine(found):  # never: a plain task gets blocking calls
            raise AssertionError("a plain task got a coroutine")
        return {"ttl": ctx.get_config().result_ttl, "other": found.returning,
                "broker": ctx.get_component("broker") is app.broker, "none": ctx.get_component("nope")}

    @app.task(echo=True)
    async def async_body(self: Any, other_uuid: str) -> dict[str, Any]:
        ctx = self.ctx
        await ctx.sleep(0.01)
        found = await ctx.get_task(other_uuid)
        return {"ttl": ctx.get_config().result_ttl, "other": found.returning,
                "broker": ctx.get_component("broker") is app.broker, "none": ctx.get_component("nope")}

    @app.task(echo=True)
    def plugin_fail(self: Any) -> None:
        self.ctx.plugin_error(reason="quota", limit=3)

    return app


EXPECTED = {"ttl": 1234.0, "other": 42, "broker": True, "none": None}


def test_context_calls_in_plain_and_async_tasks_of_the_sync_client() -> None:
    app = build(QueueTasks(name=f"ctx{uuid.uuid4().hex[:8]}", broker_url="memory://"))
    with WorkerThread(app):
        first = app.add_task("other", 21, timeout=10)
        assert first is not None
        for name in ("sync_body", "async_body"):
            done = app.add_task(name, str(first.uuid), timeout=10)
            assert done is not None and done.status == "success", (name, done)
            assert done.returning == EXPECTED, name
        failed = app.add_task("plugin_fail", timeout=10)
    assert failed is not None and failed.status == "error"
    assert "TaskPluginTriggerError" in (failed.traceback or ""), failed.traceback


def test_context_calls_in_plain_and_async_tasks_of_the_async_client() -> None:
    app = build(AsyncQueueTasks(name=f"actx{uuid.uuid4().hex[:8]}", broker_url="memory://"))

    async def main() -> list[Any]:
        first = await app.add_task("other", 21, timeout=10)
        assert first is not None
        return [await app.add_task(name, str(first.uuid), timeout=10) for name in ("sync_body", "async_body")]

    with WorkerThread(app):
        results = asyncio.run(main())
    for done in results:
        assert done is not None and done.status == "success" and done.returning == EXPECTED, done


def build_example_shapes(app: Any) -> Any:
    """Task bodies shaped as in QTasks' examples/async/based_async_app.py (``test_echo``, ``test_echo_ctx``)."""

    async def keep(value: Any) -> Any:
        return value

    @app.task(name="num")
    def num(number: int) -> int:
        return number

    @app.task(echo=True)
    async def calls_another(self: Any) -> Any:
        task = await self.add_task(5, task_name="num", timeout=10) if app.is_async else \
            await asyncio.to_thread(self.add_task, 5, task_name="num", timeout=10)
        return [task.task_name, task.returning]

    @app.task(echo=True, generate_handler=keep)
    async def reads_ctx(self: Any) -> Any:
        cached = await self.ctx.get_metadata()
        stored = await self.ctx.get_metadata(cache=False)
        # ctx.task_uuid is a UUID as in QTasks: it equals the record's uuid (a str would compare False)
        yield [self.ctx.generate_handler is keep, cached.task_name, cached.status, stored.uuid == cached.uuid,
               self.ctx.task_uuid == stored.uuid, isinstance(self.ctx.task_uuid, uuid.UUID)]

    @app.task(echo=True)
    def plain_reads_ctx(self: Any) -> Any:
        meta = self.ctx.get_metadata(cache=True)
        return [self.ctx.generate_handler, meta.task_name, self.add_task(7, task_name="num", timeout=10).returning,
                self.ctx.task_uuid == meta.uuid]

    return app


def test_qtasks_example_echo_shapes_on_the_async_client() -> None:
    app = build_example_shapes(AsyncQueueTasks(name=f"ex{uuid.uuid4().hex[:8]}", broker_url="memory://"))

    async def main() -> list[Any]:
        return [await app.add_task(name, timeout=20) for name in ("calls_another", "reads_ctx")]

    with WorkerThread(app):
        another, ctx = asyncio.run(main())
    assert another is not None and another.status == "success" and another.returning == ["num", 5], another
    assert ctx is not None and ctx.status == "success", ctx
    assert ctx.returning == [[True, "reads_ctx", "process", True, True, True]], ctx


def test_qtasks_example_echo_shapes_on_the_sync_client() -> None:
    app = build_example_shapes(QueueTasks(name=f"exs{uuid.uuid4().hex[:8]}", broker_url="memory://"))
    with WorkerThread(app):
        plain = app.add_task("plain_reads_ctx", timeout=20)
        another = app.add_task("calls_another", timeout=20)
    assert plain is not None and plain.status == "success", plain
    assert plain.returning == [None, "plain_reads_ctx", 7, True], plain
    assert another is not None and another.status == "success" and another.returning == ["num", 5], another
