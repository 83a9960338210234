"""Async client: ``from qtasks_fast.asyncio import QueueTasks`` — ``add_task``, ``get`` and control are coroutines."""

from __future__ import annotations

import asyncio
import uuid as _uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.app import BaseQueueTasks, Signature
from qtasks_fast.components.producer import NeedsLookup, as_call, call_options
from qtasks_fast.control import checked_uuid
from qtasks_fast.schemas import Task, record_from_envelope

if TYPE_CHECKING:
    import datetime as _dt

    from qtasks_fast.abc.broker import DeadLetter


class QueueTasks(BaseQueueTasks):
    """Async twin of :class:`qtasks_fast.QueueTasks`; shares the registry, worker and CLI."""

    is_async = True

    async def add_task(self, task_name: str | Signature, *args: Any, priority: int | None = None,
                       timeout: float | None = None, countdown: float | None = None,
                       eta: _dt.datetime | float | None = None, unique: str | tuple[str, float] | None = None,
                       **kwargs: Any) -> Task | None:
        """See :meth:`qtasks_fast.QueueTasks.add_task`; with ``timeout``, None when the task is not finished
        by then (it keeps running: check before reading ``.returning``)."""
        name, call_args, kwargs = as_call(task_name, args, kwargs)
        if name not in self.tasks:  # not imported here: the published table has its options (or refuses it)
            await self.resolve(name)
        when, meta = call_options(self.config, countdown, eta, unique)
        env, uid = self.build(name, call_args, kwargs, priority, eta=when, meta=meta)
        skipped = await self.send([env], wait=timeout is not None)
        if skipped:
            return await self._holder(skipped[env.uuid], env.queue, timeout)
        if timeout is None:
            return record_from_envelope(env, uuid=uid)
        task = await self.storage.wait(env.uuid, [env.queue], timeout, fresh=True)
        return self._finish(task) if task is not None and task.finished else None

    async def _holder(self, uuid: str, queue: str, timeout: float | None) -> Task | None:
        if timeout is None:
            return self._finish(await self.storage.get(uuid, [queue, *self.queues]))
        return await self.wait(uuid, timeout)

    async def add_tasks(self, calls: Iterable[Signature]) -> list[Task]:
        calls = calls if isinstance(calls, list) else list(calls)
        try:
            envs, records = self.build_many(calls)
        except NeedsLookup as miss:  # a name not imported here: read the published table, then build again
            await self.resolve(miss.args[0])
            envs, records = self.build_many(calls)
        skipped = await self.send(envs)
        if skipped:
            for i, env in enumerate(envs):
                if env.uuid in skipped:
                    records[i] = await self._holder(skipped[env.uuid], env.queue, None) or records[i]
        return records

    async def get(self, uuid: str | _uuid.UUID) -> Task | None:
        return self._finish(await self.storage.get(checked_uuid(uuid), await self.all_queues()))

    async def wait(self, uuid: str | _uuid.UUID, timeout: float) -> Task | None:
        task = await self.storage.wait(checked_uuid(uuid), await self.all_queues(), timeout)
        return self._finish(task) if task is not None and task.finished else None

    async def get_logs(self, uuid: str | _uuid.UUID) -> list[str]:
        """See :meth:`qtasks_fast.QueueTasks.get_logs`."""
        uuid = checked_uuid(uuid)
        for q in await self.all_queues():
            lines = await self.storage.get_logs(uuid, q)
            if lines:
                return lines
        return []

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
