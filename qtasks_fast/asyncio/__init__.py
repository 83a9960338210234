"""Async client: ``from qtasks_fast.asyncio import QueueTasks`` — ``add_task`` and ``get`` are coroutines."""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable
from typing import Any

from qtasks_fast.app import BaseQueueTasks, Signature
from qtasks_fast.schemas import Task, record_from_envelope


class QueueTasks(BaseQueueTasks):
    """Async twin of :class:`qtasks_fast.QueueTasks`; shares the registry, worker and CLI."""

    async def add_task(self, task_name: str, *args: Any, priority: int | None = None, timeout: float | None = None,
                       **kwargs: Any) -> Task | None:
        broker, storage = self._resolve()
        env, uid = self.build(task_name, args, kwargs, priority)
        await broker.enqueue([env], storage, wait=timeout is not None)
        if timeout is None:
            return record_from_envelope(env, uuid=uid)
        task = await storage.wait(env.uuid, [env.queue], timeout, fresh=True)
        return self._finish(task) if task is not None and task.finished else None

    async def add_tasks(self, calls: Iterable[Signature]) -> list[Task]:
        broker, storage = self._resolve()
        envs, records = self.build_many(calls)
        await broker.enqueue(envs, storage)
        return records

    async def get(self, uuid: str | _uuid.UUID) -> Task | None:
        return self._finish(await self.storage.get(str(uuid), self.queues))

    async def wait(self, uuid: str | _uuid.UUID, timeout: float) -> Task | None:
        task = await self.storage.wait(str(uuid), self.queues, timeout)
        return self._finish(task) if task is not None and task.finished else None


__all__ = ["QueueTasks"]
