"""Task control on the in-process backend: cancel, dead letters, purge, concurrency slots, claims, task table.

The twin of ``sqlite_control.py`` for unit tests. Cancels of running tasks
reach workers without polling: each :meth:`MemoryControl.cancel_requests`
iterator has an inbox that :meth:`MemoryControl.cancel` fills and wakes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.broker import LOST_KEPT, DeadLetter, Outcome, QueueStats, WorkerInfo
from qtasks_fast.abc.query import QueueDepth
from qtasks_fast.backends._local import LocalBroker, body_outcome, decoded, task_name_of
from qtasks_fast.backends.memory.state import InMemoryState, Listener, _Msg, wake
from qtasks_fast.tasktable import TaskSpec, merge

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

PURGED = "purged"


class MemoryControl(LocalBroker):
    """The optional task-control methods of :class:`~qtasks_fast.backends.memory.broker.InMemoryBroker`."""

    state: InMemoryState
    _closed: bool
    _listeners: list[Listener]

    def _finish(self, m: _Msg, status: str, text: str, rec: bool) -> list[Outcome]:
        """Drop ``m`` with a final record the broker decides (``cancel``, ``error``); returns the outcome a
        foreign storage must save (none when fused)."""
        self.state.remove(m.id)
        self.state.delayed.pop(m.id, None)
        self.state.release_unique(next(iter(decoded(m.body)), None))
        if rec:
            if m.uuid:
                self.state.end_record(m.uuid, status, text, self.result_ttl,
                                      m.deliveries if status == "error" else 0)
            return []
        return body_outcome(m.queue, m.prio, m.id, m.body, m.deliveries, status, text)

    def _to_dead(self, m: _Msg, reason: str, rec: bool) -> list[Outcome]:
        """Move ``m`` aside; returns the outcome a foreign storage must save (none when fused)."""
        self.state.dead.setdefault(m.queue, []).append(DeadLetter(
            id=str(m.id), uuid=m.uuid, queue=m.queue, reason=reason, at=time.time(), priority=m.prio,
            task_name=task_name_of(m.body), body=m.body))
        return self._finish(m, "error", "dead-lettered: " + reason, rec)

    # ------------------------------------------------------------------ cancel
    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        rec = self.fused(storage)
        st = self.state
        outcomes: list[Outcome] = []
        with st.lock:
            owned = [m for m in st.owned.values() if m.uuid == uuid and m.queue == queue]
            if owned:
                m = owned[0]
                st.cancels[m.id] = (uuid, reason)  # for a redelivery, should its worker die
                for lis in st.listeners:
                    lis.items.append((uuid, reason))
                    wake(lis.waiter)
                if m.lease_until >= time.monotonic():
                    return "running"
                outcomes += self._finish(m, "cancel", reason, rec)  # lease ran out: its worker is gone
            queued = [m for m in (*st.messages.values(), *st.delayed.values())
                      if m.uuid == uuid and m.queue == queue and m.consumer is None]
            for m in queued:
                outcomes += self._finish(m, "cancel", reason, rec)
        if owned or queued:
            if outcomes:
                await storage.save(outcomes[:1], "")
            return "queued"
        task = await storage.get(uuid, [queue])
        return "finished" if task is not None and task.finished else "unknown"

    async def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """Cancels of running tasks, pushed into this iterator's inbox by :meth:`cancel` (no polling).

        Requests already pending for messages handed out are yielded first, so a
        worker that starts listening after it fetched does not miss one.
        """
        st = self.state
        lis = Listener(asyncio.get_running_loop())
        with st.lock:
            lis.items.extend(v for k, v in st.cancels.items() if k in st.owned)
            st.listeners.add(lis)
        self._listeners.append(lis)
        try:
            while not self._closed:
                with st.lock:
                    items = list(lis.items)
                    lis.items.clear()
                    lis.waiter[1].clear()
                for item in items:
                    yield item
                if not items and not self._closed:
                    await lis.waiter[1].wait()
        finally:
            with st.lock:
                st.listeners.discard(lis)

    # ------------------------------------------------------------ dead letters
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        with self.state.lock:
            return list(reversed(self.state.dead.get(queue, [])[-count:])) if count > 0 else []

    def _take_dead(self, queue: str, ids: Sequence[str] | None) -> list[DeadLetter]:
        letters = self.state.dead.get(queue, [])
        wanted = None if ids is None else {str(i) for i in ids}
        chosen = [dl for dl in letters if wanted is None or dl.id in wanted]
        self.state.dead[queue] = [dl for dl in letters if wanted is not None and dl.id not in wanted]
        return chosen

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        st, storage = self.state, self._storage
        if storage is not None and not self.fused(storage):  # a started worker's foreign storage: records first
            wanted = None if ids is None else {str(i) for i in ids}
            with st.lock:
                envs = [env for dl in st.dead.get(queue, []) if wanted is None or dl.id in wanted
                        for env in decoded(dl.body)]
            if envs:
                await storage.create(envs)
        with st.lock:
            chosen = self._take_dead(queue, ids)
            for dl in chosen:
                st.push(queue, dl.priority, dl.uuid, dl.body)
                if dl.uuid:
                    st.renew_record(dl.uuid)
            st.wake_fetchers()
        return len(chosen)

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        with self.state.lock:
            return len(self._take_dead(queue, ids))

    # ------------------------------------------------------------------- purge
    async def purge(self, queue: str) -> int:
        st, storage = self.state, self._storage
        rec = storage is None or self.fused(storage)
        outcomes: list[Outcome] = []
        with st.lock:
            gone = [m for m in (*st.messages.values(), *st.delayed.values()) if m.queue == queue and m.consumer is None]
            for m in gone:
                outcomes += self._finish(m, "cancel", PURGED, rec)
        if outcomes and storage is not None:
            await storage.save(outcomes, "")
        return len(gone)

    async def flush_all(self, queues: Sequence[str]) -> None:
        """Empty the state (one per app) but the worker registry and the waiters: a ``wait`` in progress
        keeps waiting, for a record that will not come, until its timeout."""
        st = self.state
        with st.lock:
            for part in (st.messages, st.owned, st.ready, st.delayed, st.dead, st.records, st.keys, st.slots,
                         st.cancels, st.logs, st.task_table, st.events):
                part.clear()
            st.due.clear()

    # ---------------------------------------------------- fleet visibility
    async def register_worker(self, info: WorkerInfo) -> None:
        with self.state.lock:
            workers = self.state.workers
            oldest = time.time() - LOST_KEPT  # lost ones are listed (include_lost) until then
            for key in [k for k, w in workers.items() if w.heartbeat < oldest]:
                del workers[key]
            workers[info.key] = info

    async def unregister_worker(self, info: WorkerInfo) -> None:
        with self.state.lock:
            self.state.workers.pop(info.key, None)

    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        now = time.time()
        live, kept = now - self.lease_seconds, now - LOST_KEPT
        with self.state.lock:
            for key in [k for k, w in self.state.workers.items() if w.heartbeat < kept]:
                del self.state.workers[key]
            entries = list(self.state.workers.values())
        out = [w for w in entries if w.heartbeat >= live]
        if include_lost:
            out += [msgspec.structs.replace(w, lost=True) for w in entries if w.heartbeat < live]
        return out

    async def queue_depth(self, queue: str) -> QueueDepth:
        st, now = self.state, time.time()
        waiting: dict[int, int] = {}
        flight: dict[str, int] = {}
        delayed = 0
        with st.lock:
            ready = [m for m in st.messages.values() if m.queue == queue and m.consumer is None]
            ready += [m for m in st.delayed.values() if m.queue == queue and m.due <= now]  # due: waiting
            for m in ready:
                waiting[m.prio] = waiting.get(m.prio, 0) + 1
            for m in st.owned.values():
                if m.queue == queue and m.consumer is not None:
                    flight[m.consumer] = flight.get(m.consumer, 0) + 1
            delayed = sum(1 for m in st.delayed.values() if m.queue == queue and m.due > now)
            dead = len(st.dead.get(queue, ()))
        return QueueDepth(queue=queue, waiting_by_priority=waiting, in_flight_by_worker=flight, delayed=delayed,
                          dead=dead)

    async def queue_stats(self, queue: str) -> QueueStats:
        st, now = self.state, time.time()
        with st.lock:
            waiting = sum(1 for m in st.messages.values() if m.queue == queue and m.consumer is None)
            in_flight = sum(1 for m in st.owned.values() if m.queue == queue)
            due = [m.due <= now for m in st.delayed.values() if m.queue == queue]
            dead = len(st.dead.get(queue, ()))
        return QueueStats(waiting=waiting + sum(due), in_flight=in_flight, delayed=len(due) - sum(due), dead=dead)

    # --------------------------------------------------------- slots and claims
    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        now = time.monotonic()
        with self.state.lock:
            slots = self.state.slots.setdefault((queue, key), {})
            for t in [t for t, exp in slots.items() if exp <= now]:
                del slots[t]
            if token not in slots and len(slots) >= limit:
                return False
            slots[token] = now + ttl
            return True

    async def release_slot(self, key: str, queue: str, token: str) -> None:
        with self.state.lock:
            self.state.slots.get((queue, key), {}).pop(token, None)

    async def slot_holders(self, key: str, queue: str) -> list[str]:
        with self.state.lock:
            return list(self.state.slots.get((queue, key), {}))

    async def claim(self, key: str, ttl: float) -> bool:
        now = time.monotonic()
        with self.state.lock:
            held = self.state.keys.get("c:" + key)
            if held is not None and held[1] > now:
                return False
            self.state.keys["c:" + key] = ("", now + ttl)
            return True

    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        with self.state.lock:
            writes, kept = merge(self.state.task_table, tasks)
            self.state.task_table.update(writes)
        return kept

    async def published_tasks(self) -> dict[str, TaskSpec]:
        with self.state.lock:
            return dict(self.state.task_table)

    async def trim_indexes(self) -> None:
        """Drop expired records and keys (the worker's lease keeper calls this every minute)."""
        with self.state.lock:
            self.state.trim()
