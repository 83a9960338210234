"""In-process broker for unit tests of user code: worker and producer in ONE process.

Same semantics as the Redis and SQLite brokers (priorities, FIFO, leases,
delivery counts, dead letters, release, fused record writes, delayed delivery,
unique enqueue, cancels), kept in an :class:`InMemoryState` that a broker and a
storage share to fuse. Nothing polls: a blocking fetch sleeps on an
``asyncio.Event`` that producers set, with a timeout no longer than the next
lease expiry or ``eta`` (delayed envelopes wait in a heap and become ready in
the fetch that finds them due).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery, Outcome
from qtasks_fast.abc.capabilities import (
    Cancel,
    Claims,
    DeadLetters,
    FlushAll,
    Limits,
    Purge,
    QueueStatistics,
    TaskTable,
    WorkerRegistry,
)
from qtasks_fast.backends._local import has_unique
from qtasks_fast.backends.memory.audit import MemoryAudit
from qtasks_fast.backends.memory.control import MemoryControl
from qtasks_fast.backends.memory.state import InMemoryState, Listener, Waiter, wake
from qtasks_fast.schemas import Envelope, releases_unique

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

__all__ = ["InMemoryBroker", "InMemoryState", "Waiter", "wake"]


class InMemoryBroker(MemoryControl, Cancel, DeadLetters, Purge, FlushAll, Limits, Claims, TaskTable, WorkerRegistry,
                     QueueStatistics, MemoryAudit):
    """Broker in this process's memory; pass ``state=`` shared with an ``InMemoryStorage`` to fuse."""

    def __init__(self, *, state: InMemoryState | None = None, app_name: str = "QueueTasks",
                 priority_levels: int = 10, lease_seconds: float = 30.0, max_deliveries: int = 5,
                 result_ttl: float = 86400.0) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.state = state or InMemoryState()
        self._takeover = True
        #: a fetch passed over a message due for its last delivery: the next fetch looks for one first
        self._last_waiting = False
        self._closed = False
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"InMemoryBroker(app={self.app_name!r})"

    def fused(self, storage: Storage | None) -> bool:
        from qtasks_fast.backends.memory.storage import InMemoryStorage

        return isinstance(storage, InMemoryStorage) and storage.state is self.state

    # ---------------------------------------------------------------- producer
    def _push(self, envelopes: Sequence[Envelope], blobs: Sequence[bytes]) -> None:
        top = self.priority_levels - 1
        for env, blob in zip(envelopes, blobs, strict=True):
            self.state.push(env.queue, min(max(env.priority, 0), top), env.uuid, blob, env.eta)
        self.state.wake_fetchers()

    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool, unique: bool = True) -> dict[str, str]:
        with self.state.lock:
            return self._insert_locked(envelopes, wait, rec, unique)

    def _insert_locked(self, envelopes: Sequence[Envelope], wait: bool, rec: bool, unique: bool) -> dict[str, str]:
        skipped: dict[str, str] = {}
        if unique and has_unique(envelopes):
            skipped = self.state.claim_unique(envelopes, self.unique_ttl)
            if skipped:
                envelopes = [e for e in envelopes if e.uuid not in skipped]
        if envelopes:
            blobs = core.encode_envelopes(list(envelopes))
            if rec:
                self.state.create_records(envelopes, blobs, wait)
            self._push(envelopes, blobs)
        return skipped

    def _claim_unique(self, envelopes: Sequence[Envelope]) -> dict[str, str]:
        with self.state.lock:
            return self.state.claim_unique(envelopes, self.unique_ttl)

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` (tests of malformed input)."""
        with self.state.lock:
            self.state.push(queue, min(max(priority, 0), self.priority_levels - 1), uuid, body)
            self.state.wake_fetchers()

    # ------------------------------------------------------------------ worker
    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        self._takeover = True
        self._closed = False
        self._listeners = []  # this consumer's own (a shallow copy must not share the app broker's list)

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        deadline = time.monotonic() + block
        loop = asyncio.get_running_loop()
        while True:
            waiter: Waiter = (loop, asyncio.Event())
            with self.state.lock:
                out, dead, wake_in = self._take(count)
                left = deadline - time.monotonic()
                if not out and left > 0:
                    self.state.fetchers.add(waiter)  # registered under the lock: no enqueue slips past
            if dead and self._storage is not None:
                await self._storage.save(dead, self._worker_id)
            if out or left <= 0:
                return out
            try:  # a lease running out or an eta coming due also makes work available: wake for those too
                await asyncio.wait_for(waiter[1].wait(), min(left, max(wake_in, 0.001)))
            except asyncio.TimeoutError:
                pass
            finally:
                with self.state.lock:
                    self.state.fetchers.discard(waiter)

    def _take(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome], float]:
        """Hand out up to ``count``; returns them, foreign-storage outcomes, and seconds until more may be due."""
        st, now = self.state, time.monotonic()
        next_due = st.promote() if st.due else float("inf")
        rec = self.fused(self._storage)
        takeover, self._takeover = self._takeover, False
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        left = count
        lone = 1  # becomes 0 when a last attempt goes out alone
        # a hand-out that would be a message's last allowed delivery goes out alone (as on Redis and SQLite)
        alone = self.max_deliveries - 1 if self.max_deliveries > 1 else float("inf")
        first = self._last_attempt(now, takeover) if self._last_waiting else None
        for q in self._queues:
            if left <= 0:
                break
            if first is not None and first.queue != q:
                continue
            # abandoned messages first (a predecessor's at takeover, other consumers' expired leases: never
            # this one's own, which it still runs however late their renewal), then ready ones
            claim = iter([first] if first is not None else sorted((m for m in st.owned.values() if m.queue == q and (
                self._abandoned(m, now, takeover))), key=lambda m: (m.prio, m.id)))
            flat: list[Any] = []
            uuids: list[str] = []
            passed: list[Any] = []  # last attempts passed over for a fetch of their own
            while left > 0:
                m = next(claim, None) or (st.pop_ready(q) if first is None else None)
                if m is None:
                    break
                if st.cancels and m.id in st.cancels:  # cancelled while running, its worker died
                    dead += self._finish(m, "cancel", st.cancels[m.id][1], rec)
                    continue
                if m.deliveries >= self.max_deliveries:
                    reason = f"delivered {m.deliveries} times without finishing (max_deliveries={self.max_deliveries})"
                    dead += self._to_dead(m, reason, rec)
                    continue
                if m.deliveries >= alone:
                    if left < count:  # others are taken already: it waits for a fetch of its own,
                        self._last_waiting = True  # unowned (a dead predecessor's lease must not hold it)
                        passed.append(m)
                        continue
                    left = lone = 0  # the only message of this fetch
                m.consumer, m.lease_until = self._consumer, now + self.lease_seconds
                m.deliveries += 1
                st.owned[m.id] = m
                flat += (m.prio, m.id, m.body, m.deliveries)
                if m.uuid:
                    uuids.append(m.uuid)
                left -= 1
            for m in passed:
                st.requeue(m)
            if flat:
                if rec:
                    st.mark(uuids, self._worker_id)
                out.append((q, flat))
        # a takeover that handed out one last attempt alone goes on with the next fetch (the worker runs
        # that attempt alone and settles it first), until the predecessor's messages are all handed out
        self._takeover = takeover and not lone
        next_expiry = min((m.lease_until for m in st.owned.values() if m.consumer != self._consumer),
                          default=now + 3600.0)
        return out, dead, min(next_expiry - now, next_due - time.time())

    def _last_attempt(self, now: float, takeover: bool) -> Any:
        """A claimable message due for its last delivery that a fetch passed over, or None (rare: runs only
        after such a pass-over)."""
        self._last_waiting = False
        st, alone = self.state, self.max_deliveries - 1
        served = set(self._queues)
        found = [m for m in st.messages.values() if m.queue in served and m.deliveries >= alone and (
            m.consumer is None or self._abandoned(m, now, takeover))]
        return min(found, key=lambda m: (self._queues.index(m.queue), m.prio, m.id)) if found else None

    def _abandoned(self, m: Any, now: float, takeover: bool) -> bool:
        """Handed out and free to take: another consumer's expired lease, or this consumer name's own at
        takeover (a replacement process). Never this live consumer's own otherwise: it still runs them."""
        if m.consumer == self._consumer:
            return takeover
        return bool(m.lease_until < now)

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = await self.settle_unfused(outcomes, storage, retries)
        with self.state.lock:  # one critical section: nobody sees the retry without the parent's result
            if rec:
                if retries:
                    self._insert_locked(retries, False, True, True)
                self.state.finish_records(outcomes, self._worker_id, self.result_ttl)
            for o in outcomes:
                self.state.remove(o[0].msg_id)
                if o[1] != "success" and releases_unique(o[1], o[4]):
                    self.state.release_unique(o[0].envelope)

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        until = time.monotonic() + self.lease_seconds
        held: list[Delivery] = []
        with self.state.lock:
            for d in deliveries:
                m = self.state.owned.get(d.msg_id)
                if m is not None and m.consumer == self._consumer:  # one taken over stays with its new owner
                    m.lease_until = until
                    held.append(d)
        return held

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Back to ready at once; the hand-out did not run, so it does not count as a delivery.

        One whose cancel was asked meanwhile is finished as ``cancel`` instead of going back.
        """
        rec = self.fused(self._storage)
        cancelled: list[Outcome] = []
        with self.state.lock:
            st = self.state
            for d in deliveries:
                m = st.owned.get(d.msg_id)
                if m is None or m.consumer != self._consumer:
                    continue
                if st.cancels and m.id in st.cancels:
                    cancelled += self._finish(m, "cancel", st.cancels[m.id][1], rec)
                    continue
                m.deliveries = max(m.deliveries - 1, 0)
                st.requeue(m)
                if rec:
                    st.unmark(m.uuid)
            st.wake_fetchers()
        if cancelled and self._storage is not None:
            await self._storage.save(cancelled, self._worker_id)

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        with self.state.lock:
            for d, reason in items:
                m = self.state.messages.get(d.msg_id)
                if m is not None:  # gone = settled or dead-lettered by whoever took it over
                    self._to_dead(m, reason, rec)

    async def close(self) -> None:
        """End this consumer's :meth:`cancel_requests` iterators."""
        self._closed = True
        for lis in self._listeners:
            wake(lis.waiter)
