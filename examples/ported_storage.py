"""A QTasks custom storage ported to qtasks_fast: task records in a dict (docs/from-qtasks.md, "A worked port").

The QTasks original subclassed ``qtasks.storages.base.BaseStorage`` and implemented ``add(uuid, task_status)``,
``get(uuid)``, ``get_all()``, ``update(name=..., mapping=...)``, ``add_process``, ``remove_finished_task``,
``start``/``stop``. Here the worker, not the storage, owns the life of a record, so the port keeps the dict and
answers our contract (``qtasks_fast.abc.Storage``) instead:

- ``add`` becomes :meth:`create` (a batch of envelopes, one ``new`` record each);
- ``update`` + ``remove_finished_task`` become :meth:`save` (final outcomes, idempotent: a task may run
  twice after a crash, at-least-once, and the second save overwrites the first);
- ``add_process`` becomes :meth:`mark_started`;
- ``get`` stays :meth:`get`, returning a ``qtasks_fast.schemas.Task`` built with ``task_from_envelope``;
- QTasks' client polled ``get`` every ``result_time_interval``; here :meth:`wait` is the storage's, so a
  backend that can push (Redis, SQLite) does. This dict polls with backoff, which the contract allows;
- ``get_all``/``start``/``stop`` have no counterpart: listing is the broker's (``inspect``), and
  connections open lazily and close in :meth:`close`.

Use it with any broker (not fused: the worker calls every method here):
``QueueTasks("shop", broker=InMemoryBroker(app_name="shop"), storage=DictStorage())``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from qtasks_fast.abc import Storage
from qtasks_fast.schemas import Envelope, Task, TaskStatus, task_from_envelope

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome

FINAL = frozenset({TaskStatus.SUCCESS.value, TaskStatus.ERROR.value, TaskStatus.CANCEL.value})


class DictStorage(Storage):
    """Task records in a dict of this process, one per uuid."""

    def __init__(self, result_ttl: float = 86400.0) -> None:
        self.result_ttl = result_ttl
        self.records: dict[str, Task] = {}
        self.expires: dict[str, float] = {}
        # the worker's loop and the client's helper loop run on different threads
        self.lock = threading.Lock()

    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        with self.lock:
            for env in envelopes:
                self.records.setdefault(env.uuid, task_from_envelope(env, TaskStatus.NEW.value))

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        with self.lock:
            for d in deliveries:
                if d.envelope is not None and d.envelope.uuid not in self.expires:  # never undo a final state
                    self.records[d.envelope.uuid] = task_from_envelope(d.envelope, TaskStatus.PROCESS.value,
                                                                       updated=time.time(), worker_id=worker_id)

    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        now = time.time()
        with self.lock:
            for delivery, status, returning, traceback, retry_child in outcomes:
                env = delivery.envelope
                if env is None:
                    continue
                self.records[env.uuid] = task_from_envelope(env, status, updated=now, returning=returning,
                                                            traceback=traceback, retry_child=retry_child,
                                                            worker_id=worker_id)
                self.expires[env.uuid] = now + self.result_ttl

    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        with self.lock:
            if self.expires.get(uuid, float("inf")) < time.time():
                self.records.pop(uuid, None)
                self.expires.pop(uuid, None)
            return self.records.get(uuid)

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            task = await self.get(uuid, queues)
            if task is not None and task.status == TaskStatus.ERROR.value and task.retry_child_uuid is not None:
                uuid = str(task.retry_child_uuid)  # a retried failure: its retry decides the outcome
                continue
            if task is None or task.status in FINAL or time.monotonic() >= deadline:
                return task
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.2)
