"""Task records in process memory, for unit tests of user code (pairs with ``InMemoryBroker``).

``wait`` never polls: an async waiter parks on an ``asyncio.Event`` registered
for its uuid, a sync waiter on the state's ``threading.Condition``; every
record change wakes both (across threads via ``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.memory.query import MemoryQueries
from qtasks_fast.backends.memory.state import InMemoryState, Waiter
from qtasks_fast.schemas import Envelope, Task, TaskStatus

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome


_FINISHED = frozenset(s.value for s in TaskStatus if s.finished)


class InMemoryStorage(MemoryQueries, Storage):
    """Records in an :class:`InMemoryState`; share the broker's ``state`` to fuse writes."""

    def __init__(self, *, state: InMemoryState | None = None, app_name: str = "QueueTasks",
                 result_ttl: float = 86400.0) -> None:
        self.state = state or InMemoryState()
        self.app_name = app_name
        self.result_ttl = result_ttl

    def __repr__(self) -> str:
        return f"InMemoryStorage(app={self.app_name!r})"

    # Writes for a foreign broker; InMemoryBroker on the same state does them itself.
    def create_sync(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        blobs = [msgspec.msgpack.encode(e) for e in envelopes]
        with self.state.lock:
            self.state.create_records(envelopes, blobs, wait)

    async def create(self, envelopes: Sequence[Envelope], wait: bool = False) -> None:
        self.create_sync(envelopes, wait)

    async def save(self, outcomes: Sequence[Outcome], worker_id: str) -> None:
        with self.state.lock:
            self.state.finish_records(outcomes, worker_id, self.result_ttl)

    async def mark_started(self, deliveries: Sequence[Delivery], worker_id: str) -> None:
        with self.state.lock:
            self.state.mark([d.envelope.uuid for d in deliveries if d.envelope is not None], worker_id)

    async def delete_finished(self, queues: Sequence[str]) -> int:
        with self.state.lock:
            gone = [u for u, r in self.state.records.items() if r.queue in queues and r.status in _FINISHED]
            for uuid in gone:
                queue = self.state.records.pop(uuid).queue
                self.state.logs.pop((queue, uuid), None)
            return len(gone)

    def get_sync(self, uuid: str, queues: Sequence[str]) -> Task | None:
        with self.state.lock:
            rec = self.state.record(uuid, queues)
            return rec.task() if rec is not None else None

    async def get(self, uuid: str, queues: Sequence[str]) -> Task | None:
        return self.get_sync(uuid, queues)

    async def append_logs(self, uuid: str, queue: str, lines: Sequence[str]) -> None:
        with self.state.lock:
            self.state.append_logs(queue, uuid, lines, self.result_ttl)

    async def get_logs(self, uuid: str, queue: str) -> list[str]:
        return self.get_logs_sync(uuid, queue)

    def get_logs_sync(self, uuid: str, queue: str) -> list[str]:
        with self.state.lock:
            return self.state.get_logs(queue, uuid)

    @staticmethod
    def _child(task: Task, deadline: float) -> str | None:
        """The retry child of a failed attempt, while time is left: the chain's answer lives there."""
        if task.status == TaskStatus.ERROR.value and task.retry_child_uuid and time.monotonic() < deadline:
            return str(task.retry_child_uuid)
        return None

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        st = self.state
        parent: Task | None = None  # the failed attempt whose retry we follow
        while True:
            waiter: Waiter = (loop, asyncio.Event())
            with st.lock:
                rec = st.record(uuid, queues)
                task = rec.task() if rec is not None else None
                if rec is not None and task is not None and not task.finished:
                    rec.awaited = True
                    st.watchers.setdefault(uuid, set()).add(waiter)  # under the lock: no save slips past
            if task is None:
                return parent
            if task.finished:
                child = self._child(task, deadline)
                if child is None:
                    return task
                parent, uuid, queues = task, child, [task.queue]
                continue
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    return task
                await asyncio.wait_for(waiter[1].wait(), left)
            except asyncio.TimeoutError:
                pass  # the next turn returns the current record
            finally:
                with st.lock:
                    watchers = st.watchers.get(uuid)
                    if watchers is not None:
                        watchers.discard(waiter)
                        if not watchers:
                            del st.watchers[uuid]

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        deadline = time.monotonic() + timeout
        st = self.state
        parent: Task | None = None
        with st.changed:
            while True:
                rec = st.record(uuid, queues)
                if rec is None:
                    return parent
                task = rec.task()
                if task.finished:
                    child = self._child(task, deadline)
                    if child is None:
                        return task
                    parent, uuid, queues = task, child, [task.queue]
                    continue
                rec.awaited = True
                left = deadline - time.monotonic()
                if left <= 0:
                    return task
                st.changed.wait(left)
