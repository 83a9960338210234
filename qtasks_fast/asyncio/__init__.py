"""Async client: ``from qtasks_fast.asyncio import QueueTasks`` — ``add_task``, ``get`` and control are coroutines."""

from __future__ import annotations

import asyncio
import uuid as _uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.app import BaseQueueTasks, Signature
from qtasks_fast.components import client_ops
from qtasks_fast.schemas import Task
from qtasks_fast.steps import run

if TYPE_CHECKING:
    import datetime as _dt

    from qtasks_fast.abc.broker import DeadLetter


class QueueTasks(BaseQueueTasks):
    """Async twin of :class:`qtasks_fast.QueueTasks`; shares the registry, worker and CLI."""

    is_async = True

    async def add_task(self, task_name: str | Signature, *args: Any, priority: int | None = None,
                       timeout: float | None = None, countdown: float | None = None,
                       eta: _dt.datetime | float | None = None, unique: str | tuple[str, float] | None = None,
                       connection: Any = None, **kwargs: Any) -> Task | None:
        """See :meth:`qtasks_fast.QueueTasks.add_task`; with ``timeout``, None when the task is not finished
        by then (it keeps running: check before reading ``.returning``). ``connection``: an open asyncpg
        transaction's connection (postgresql://): the task exists only if that transaction commits."""
        return await run(client_ops.adding(self, task_name, args, kwargs, priority, timeout, countdown, eta, unique,
                                           connection))

    async def add_tasks(self, calls: Iterable[Signature]) -> list[Task]:
        """See :meth:`qtasks_fast.QueueTasks.add_tasks`."""
        return await run(client_ops.adding_many(self, calls))

    async def get(self, uuid: str | _uuid.UUID) -> Task | None:
        """See :meth:`qtasks_fast.QueueTasks.get`."""
        return await run(client_ops.getting(self, uuid))

    async def wait(self, uuid: str | _uuid.UUID, timeout: float) -> Task | None:
        """See :meth:`qtasks_fast.QueueTasks.wait`."""
        return await run(client_ops.waiting(self, uuid, timeout))

    async def get_logs(self, uuid: str | _uuid.UUID) -> list[str]:
        """See :meth:`qtasks_fast.QueueTasks.get_logs`."""
        return await run(client_ops.logs(self, uuid))

    async def stop(self) -> None:
        """See :meth:`qtasks_fast.QueueTasks.stop` (a coroutine, as QTasks' async ``stop``)."""
        if self._stop_serving is not None:
            self._stop_serving()

    async def ping(self, server: bool = True) -> bool:
        """See :meth:`qtasks_fast.QueueTasks.ping`."""
        from qtasks_fast import control

        return await control.ping(self, server)

    async def close(self) -> None:
        """Release this client's connections on the running loop (and any blocking ones); it reconnects if
        used again. Also ``async with QueueTasks(...) as app:``."""
        await self._close_backend()

    async def __aenter__(self) -> QueueTasks:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def run_forever(self, loop: asyncio.AbstractEventLoop | None = None, starter: Any = None,
                    num_workers: int | None = None, reset_config: bool = True) -> None:
        """QTasks ``app.run_forever()`` (blocking, not a coroutine): run a worker of the app in this process
        until SIGTERM/SIGINT, on ``loop`` if given; see :func:`qtasks_fast.worker.runner.run_forever`."""
        from qtasks_fast.worker.runner import run_forever

        run_forever(self, num_workers, starter, reset_config, loop)

    # ------------------------------------------------ task control (qtasks_fast.control)
    async def cancel(self, uuid: str | _uuid.UUID, reason: str = "") -> str:
        from qtasks_fast import control

        return await control.cancel(self, str(uuid), reason)

    async def restart(self, uuid: str | _uuid.UUID) -> Task:
        from qtasks_fast import control

        return await control.restart(self, str(uuid))

    async def dlq_list(self, queue: str | None = None, count: int = 100) -> list[DeadLetter]:
        from qtasks_fast import control

        return await control.dlq_list(self, queue, count)

    async def dlq_requeue(self, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
        from qtasks_fast import control

        return await control.dlq_requeue(self, queue, ids)

    async def dlq_purge(self, queue: str | None = None, ids: Sequence[str] | None = None) -> int:
        from qtasks_fast import control

        return await control.dlq_purge(self, queue, ids)

    async def purge(self, queue: str) -> int:
        from qtasks_fast import control

        return await control.purge(self, queue)

    async def flush_all(self) -> None:
        """See :meth:`qtasks_fast.QueueTasks.flush_all`."""
        from qtasks_fast import control

        await control.flush_all(self)


__all__ = ["QueueTasks"]
