"""Task records in process memory, for unit tests of user code (pairs with ``InMemoryBroker``).

``wait`` never polls: a waiter registers a :class:`_Change` for its uuid under the state's lock (so no
save slips past between reading the record and waiting), which every change of that record wakes: a
blocking caller on a ``threading.Event``, a coroutine on an ``asyncio.Event`` of its own loop (across
threads via ``loop.call_soon_threadsafe``). One loop serves both (``_waiting``, see qtasks_fast.steps).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.memory.query import MemoryQueries
from qtasks_fast.backends.memory.state import InMemoryState
from qtasks_fast.schemas import Envelope, Task, TaskStatus
from qtasks_fast.steps import Steps, run, run_sync

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome


_FINISHED = frozenset(s.value for s in TaskStatus if s.finished)


class _Change:
    """A step of ``InMemoryStorage._waiting``: until the record of ``uuid`` changes, at most ``timeout`` seconds.

    Created and registered in ``state.watchers`` under the lock, while the record is read. ``wake`` (called
    by ``state.notify``, under the lock too) sets a ``threading.Event``, so a change between the read and the
    wait is remembered for either driver; a coroutine also gets an ``asyncio.Event`` set on its own loop.
    """

    __slots__ = ("state", "uuid", "timeout", "fired", "loop", "event")

    def __init__(self, state: InMemoryState, uuid: str, timeout: float) -> None:
        self.state, self.uuid, self.timeout = state, uuid, timeout
        self.fired = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        state.watchers.setdefault(uuid, set()).add(self)

    def wake(self) -> None:
        self.fired.set()
        if self.loop is not None and self.event is not None:
            try:
                self.loop.call_soon_threadsafe(self.event.set)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def sync(self) -> None:
        try:
            self.fired.wait(self.timeout)
        finally:
            self._leave()

    def __await__(self) -> Generator[Any, None, None]:
        return self._wait().__await__()

    async def _wait(self) -> None:
        event = asyncio.Event()
        with self.state.lock:
            self.loop, self.event = asyncio.get_running_loop(), event
            if self.fired.is_set():
                event.set()
        try:
            await asyncio.wait_for(event.wait(), self.timeout)
        except asyncio.TimeoutError:
            pass  # the next turn returns the current record
        finally:
            self._leave()

    def _leave(self) -> None:
        with self.state.lock:
            watchers = self.state.watchers.get(self.uuid)
            if watchers is not None:
                watchers.discard(self)
                if not watchers:
                    del self.state.watchers[self.uuid]


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

    def _waiting(self, uuid: str, queues: Sequence[str], timeout: float) -> Steps[Task | None]:
        """The wait, once for :meth:`wait` and :meth:`wait_sync`: the record, else park on its next change."""
        deadline = time.monotonic() + timeout
        st = self.state
        parent: Task | None = None  # the failed attempt whose retry we follow
        while True:
            change = None
            with st.lock:
                rec = st.record(uuid, queues)
                task = rec.task() if rec is not None else None
                if rec is not None and task is not None and not task.finished:
                    rec.awaited = True
                    left = deadline - time.monotonic()
                    if left > 0:
                        change = _Change(st, uuid, left)  # registered under the lock: no save slips past
            if task is None:
                return parent
            if task.finished:
                child = self._child(task, deadline)
                if child is None:
                    return task
                parent, uuid, queues = task, child, [task.queue]
                continue
            if change is None:
                return task  # time is up: the current record
            yield change

    async def wait(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return await run(self._waiting(uuid, queues, timeout))

    def wait_sync(self, uuid: str, queues: Sequence[str], timeout: float, fresh: bool = False) -> Task | None:
        return run_sync(self._waiting(uuid, queues, timeout))
