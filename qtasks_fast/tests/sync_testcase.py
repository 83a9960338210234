"""``SyncTestCase`` (QTasks ``qtasks.tests.SyncTestCase``): a test case of a sync ``QueueTasks``."""

from __future__ import annotations

import uuid as _uuid
from typing import TYPE_CHECKING, Any

from qtasks_fast.tests.base import BaseTestCase

if TYPE_CHECKING:
    from qtasks_fast.app import QueueTasks
    from qtasks_fast.schemas.task import Task


class SyncTestCase(BaseTestCase):
    """``case = SyncTestCase(app=app); case.settings(TestConfig.full()); case.add_task("name", 1, timeout=5)``."""

    app: QueueTasks

    def start(self, starter: Any = None, num_workers: int | None = None, reset_config: bool = True) -> None:
        """Run a worker of the app in this thread, blocking until SIGTERM/SIGINT (``app.run_forever``)."""
        self._check_worker()
        self.app.run_forever(starter=starter, num_workers=num_workers, reset_config=reset_config)

    def stop(self) -> None:
        """Stop the background worker and give the app back its own broker and plugins."""
        self._stop_parts()

    def add_task(self, task_name: str, *args: Any, priority: int | None = None, timeout: float | None = None,
                 **kwargs: Any) -> Task | None:
        """``app.add_task`` on the parts the settings chose: with ``timeout``, the finished Task or None."""
        self._check_sends()
        return self.app.add_task(task_name, *args, priority=priority, timeout=timeout, **kwargs)

    def get(self, uuid: _uuid.UUID | str) -> Task | None:
        """The record of task ``uuid``, or None when unknown."""
        return self.app.get(uuid)
