"""QTasks' result waiters (``qtasks.results.SyncResult/AsyncResult``) over ``app.wait``.

    task = app.add_task("add", 1, 2)
    done = SyncResult(uuid=task.uuid).result(timeout=50)        # the finished Task, or None
    done = await AsyncResult(uuid=task.uuid, app=aio_app).result(timeout=50)

Why not QTasks' polling loop: ``app.wait`` already follows the retry chain to the final attempt and
blocks on the broker until the record is final (no polling), so these classes only give it QTasks'
names, defaults (the main app: the one created last; ``timeout`` 100 s) and its ``None`` on timeout.
Either class works with either client: a sync app's wait runs in a thread for ``AsyncResult``, an async
app's on the helper loop for ``SyncResult``.
"""

from __future__ import annotations

import asyncio
import uuid as _uuid
from typing import TYPE_CHECKING, Any

from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.schemas import Task

log = get_logger("results")


class _Result:
    """What both waiters share: the app (given, or the main app) and the uuid."""

    def __init__(self, uuid: _uuid.UUID | str | None = None, app: BaseQueueTasks | None = None,
                 log: Any = None) -> None:
        if log is not None:
            raise TypeError(f"{type(self).__name__}(log=...): qtasks_fast logs through the standard logging module "
                            "(logger 'qtasks_fast.results'); drop log= and configure logging instead")
        #: the sync or the async client (each waiter handles both)
        self._app: Any = app if app is not None else _main_app(type(self).__name__)
        self.uuid = uuid

    def _uuid(self) -> str:
        if not self.uuid:
            raise ValueError(f"{type(self).__name__}: no task uuid: pass uuid=task.uuid")
        return str(self.uuid)

    def _timed_out(self, uuid: str, timeout: float) -> None:
        log.warning("task %s not finished within %g s", uuid, timeout)


def _main_app(who: str) -> BaseQueueTasks:
    from qtasks_fast.router import main_app

    app = main_app()
    if app is None:
        raise ImportError(f"{who}: no app: create a QueueTasks first, or pass app=")
    return app


class SyncResult(_Result):
    """Wait for a task's final record from sync code (QTasks ``SyncResult``)."""

    def result(self, timeout: float = 100) -> Task | None:
        """The final Task (success, error or cancel; the last retry's), or None if not final within ``timeout``."""
        uuid = self._uuid()
        waited = self._app.wait(uuid, timeout)
        if asyncio.iscoroutine(waited):  # the async client: run its wait on the helper loop
            from qtasks_fast.portal import portal

            waited = portal().run(waited)
        if waited is None:
            self._timed_out(uuid, timeout)
        return waited  # type: ignore[no-any-return]


class AsyncResult(_Result):
    """Wait for a task's final record from async code (QTasks ``AsyncResult``)."""

    async def result(self, timeout: float = 100) -> Task | None:
        """See :meth:`SyncResult.result`."""
        uuid = self._uuid()
        if self._app.is_async:
            task = await self._app.wait(uuid, timeout)
        else:  # the sync client blocks: keep the loop free
            task = await asyncio.to_thread(self._app.wait, uuid, timeout)
        if task is None:
            self._timed_out(uuid, timeout)
        return task  # type: ignore[no-any-return]


__all__ = ["AsyncResult", "SyncResult"]

#: QTasks imports classes from modules below this one (qtasks_fast.qtasks_paths): a package for the import system
__path__: list[str] = []
