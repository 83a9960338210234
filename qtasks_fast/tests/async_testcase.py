"""``AsyncTestCase`` (QTasks ``qtasks.tests.AsyncTestCase``): a test case of an async ``QueueTasks``."""

from __future__ import annotations

import asyncio
import uuid as _uuid
from typing import TYPE_CHECKING, Any

from qtasks_fast.tests.base import BaseTestCase

if TYPE_CHECKING:
    from qtasks_fast.asyncio import QueueTasks
    from qtasks_fast.schemas.task import Task


class AsyncTestCase(BaseTestCase):
    """``case = AsyncTestCase(app=app); case.settings(TestConfig.full()); await case.add_task("name", timeout=5)``."""

    app: QueueTasks

    def __init__(self, app: QueueTasks, name: str | None = None) -> None:
        super().__init__(app, name)
        self._stop_event: asyncio.Event | None = None

    async def start(self, loop: asyncio.AbstractEventLoop | None = None, starter: Any = None,
                    num_workers: int | None = None, reset_config: bool = True) -> None:
        """Run a worker of the app on the running loop until :meth:`stop` (QTasks called the blocking
        ``run_forever`` here, which cannot run inside a running loop). ``loop`` must be that loop or None."""
        from qtasks_fast.worker.worker import Worker

        self._check_worker()
        if starter is not None or not reset_config:
            raise TypeError("start: starter= and reset_config=False are not supported by qtasks_fast (no starters; "
                            "a worker always uses app.config): drop them")
        if loop is not None and loop is not asyncio.get_running_loop():
            raise ValueError("AsyncTestCase.start(loop=...): a worker runs on the loop that awaits start(); "
                             "drop loop= or await start() on that loop")
        self._stop_event = asyncio.Event()
        worker = Worker(self.app, worker_id=self.name or "testcase", concurrency=num_workers)
        await worker.run(self._stop_event)

    async def stop(self) -> None:
        """Stop the worker of :meth:`start` or :meth:`start_in_background` and give the app back its own broker
        and plugins."""
        if self._stop_event is not None:
            self._stop_event.set()
            self._stop_event = None
        await asyncio.to_thread(self._stop_parts)

    async def add_task(self, task_name: str, *args: Any, priority: int | None = None, timeout: float | None = None,
                       **kwargs: Any) -> Task | None:
        """``await app.add_task`` on the parts the settings chose: with ``timeout``, the finished Task or None."""
        self._check_sends()
        return await self.app.add_task(task_name, *args, priority=priority, timeout=timeout, **kwargs)

    async def get(self, uuid: _uuid.UUID | str) -> Task | None:
        """The record of task ``uuid``, or None when unknown."""
        return await self.app.get(uuid)
