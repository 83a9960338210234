"""In-process broker for unit tests of user code: worker and producer in ONE process.

Same semantics as the Redis and SQLite brokers (priorities, FIFO, leases,
delivery counts, dead letters, release, fused record writes), kept in an
:class:`InMemoryState` that a broker and a storage share to fuse. Nothing
polls: a blocking fetch sleeps on an ``asyncio.Event`` that producers set. The
sync client may call from another thread, so the state is guarded by a
``threading.Lock`` and waiters of another loop are woken with
``loop.call_soon_threadsafe``. Leases use ``time.monotonic`` (one process).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast import _corelib as core
from qtasks_fast.abc.broker import Delivery, Outcome
from qtasks_fast.brokers._local import LocalBroker
from qtasks_fast.schemas import Envelope, Task, task_from_envelope, ts_to_dt

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage

_env_decode = msgspec.msgpack.Decoder(Envelope).decode
Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]


def wake(waiter: Waiter) -> None:
    """Set an event owned by any loop, from any thread."""
    loop, event = waiter
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # that loop is closed: nobody is waiting any more
        pass


class _Msg:
    __slots__ = ("id", "queue", "prio", "uuid", "body", "consumer", "lease_until", "deliveries")

    def __init__(self, msg_id: int, queue: str, prio: int, uuid: str, body: bytes) -> None:
        self.id, self.queue, self.prio, self.uuid, self.body = msg_id, queue, prio, uuid, body
        self.consumer: str | None = None
        self.lease_until = 0.0
        self.deliveries = 0


class _Record:
    __slots__ = ("queue", "status", "blob", "created", "updated", "returning", "traceback", "worker_id",
                 "retry_child", "awaited", "expires_at")

    def __init__(self, queue: str, blob: bytes, now: float, awaited: bool) -> None:
        self.queue, self.blob, self.created, self.updated, self.awaited = queue, blob, now, now, awaited
        self.status = "new"
        self.returning: bytes | None = None
        self.traceback: str | None = None
        self.worker_id: str | None = None
        self.retry_child: str | None = None
        self.expires_at: float | None = None  # time.monotonic() deadline, set once final

    def task(self) -> Task:
        return task_from_envelope(_env_decode(self.blob), self.status, updated=self.updated,
                                  returning=self.returning or b"", traceback=self.traceback,
                                  retry_child=self.retry_child, worker_id=self.worker_id, queue=self.queue,
                                  created=ts_to_dt(self.created))


class InMemoryState:
    """Messages, records and waiters of one in-process backend. Methods below ``lock`` expect it held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: notified on every record change, for ``wait_sync`` callers
        self.changed = threading.Condition(self.lock)
        self._ids = itertools.count(1)
        self.messages: dict[int, _Msg] = {}
        self.owned: dict[int, _Msg] = {}  # handed out, not settled
        self.ready: dict[str, list[tuple[int, int]]] = {}  # per queue heap of (prio, id)
        self.dead: dict[str, list[dict[str, Any]]] = {}
        self.records: dict[str, _Record] = {}
        self.fetchers: set[Waiter] = set()
        self.watchers: dict[str, set[Waiter]] = {}

    # ---------------------------------------------------------------- messages
    def push(self, queue: str, prio: int, uuid: str, body: bytes) -> None:
        m = _Msg(next(self._ids), queue, prio, uuid, body)
        self.messages[m.id] = m
        heapq.heappush(self.ready.setdefault(queue, []), (prio, m.id))

    def requeue(self, m: _Msg) -> None:
        """Back to ready at its old place (its id keeps it ahead of later messages of its priority)."""
        self.owned.pop(m.id, None)
        m.consumer = None
        heapq.heappush(self.ready.setdefault(m.queue, []), (m.prio, m.id))

    def pop_ready(self, queue: str) -> _Msg | None:
        heap = self.ready.get(queue)
        while heap:
            _, msg_id = heapq.heappop(heap)
            m = self.messages.get(msg_id)
            if m is not None and m.consumer is None:
                return m
        return None

    def remove(self, msg_id: int) -> _Msg | None:
        self.owned.pop(msg_id, None)
        return self.messages.pop(msg_id, None)

    def wake_fetchers(self) -> None:
        for w in self.fetchers:
            wake(w)

    # ----------------------------------------------------------------- records
    def create_records(self, envelopes: Sequence[Envelope], blobs: Sequence[bytes], wait: bool) -> None:
        now = time.time()
        for env, blob in zip(envelopes, blobs, strict=True):
            self.records[env.uuid] = _Record(env.queue, blob, now, wait)

    def finish_records(self, outcomes: Sequence[Outcome], worker_id: str, ttl: float) -> None:
        now, expires = time.time(), time.monotonic() + ttl
        for d, status, ret, tb, child in outcomes:
            env = d.envelope
            assert env is not None, "settled deliveries always carry their envelope"
            rec = self.records.get(env.uuid)
            if rec is None:  # record gone (expired, foreign producer): the result still reports
                rec = self.records[env.uuid] = _Record(env.queue, msgspec.msgpack.encode(env), env.created_at, False)
            rec.status, rec.returning, rec.updated = status, ret, now
            rec.traceback, rec.retry_child = tb or None, child or None
            rec.worker_id, rec.expires_at = worker_id or rec.worker_id, expires
            self.notify(env.uuid)

    def fail_record(self, uuid: str, traceback: str, ttl: float) -> None:
        rec = self.records.get(uuid)
        if rec is not None:
            rec.status, rec.traceback, rec.updated = "error", traceback, time.time()
            rec.expires_at = time.monotonic() + ttl
            self.notify(uuid)

    def mark(self, uuids: Sequence[str], worker_id: str) -> None:
        now = time.time()
        for u in uuids:
            rec = self.records.get(u)
            if rec is not None:
                rec.status, rec.worker_id, rec.updated = "process", worker_id, now

    def notify(self, uuid: str) -> None:
        self.changed.notify_all()
        for w in self.watchers.get(uuid, ()):
            wake(w)

    def record(self, uuid: str, queues: Sequence[str]) -> _Record | None:
        rec = self.records.get(uuid)
        if rec is not None and rec.expires_at is not None and rec.expires_at <= time.monotonic():
            del self.records[uuid]  # expired: gone, as a Redis key with a TTL would be
            return None
        if rec is None or (queues and rec.queue not in queues):
            return None
        return rec

    def trim(self) -> None:
        now = time.monotonic()
        for uuid in [u for u, r in self.records.items() if r.expires_at is not None and r.expires_at <= now]:
            del self.records[uuid]


class InMemoryBroker(LocalBroker):
    """Broker in this process's memory; pass ``state=`` shared with an ``InMemoryStorage`` to fuse."""

    def __init__(self, *, state: InMemoryState | None = None, app_name: str = "QueueTasks",
                 priority_levels: int = 10, lease_seconds: float = 30.0, max_deliveries: int = 5,
                 result_ttl: float = 86400.0) -> None:
        super().__init__(app_name=app_name, priority_levels=priority_levels, lease_seconds=lease_seconds,
                         max_deliveries=max_deliveries, result_ttl=result_ttl)
        self.state = state or InMemoryState()
        self._takeover = True

    def __repr__(self) -> str:
        return f"InMemoryBroker(app={self.app_name!r})"

    def fused(self, storage: Storage | None) -> bool:
        from qtasks_fast.storages.memory import InMemoryStorage

        return isinstance(storage, InMemoryStorage) and storage.state is self.state

    # ---------------------------------------------------------------- producer
    def _push(self, envelopes: Sequence[Envelope], blobs: Sequence[bytes]) -> None:
        top = self.priority_levels - 1
        for env, blob in zip(envelopes, blobs, strict=True):
            self.state.push(env.queue, min(max(env.priority, 0), top), env.uuid, blob)
        self.state.wake_fetchers()

    def _insert(self, envelopes: Sequence[Envelope], wait: bool, rec: bool) -> None:
        blobs = core.encode_envelopes(list(envelopes))
        with self.state.lock:
            if rec:
                self.state.create_records(envelopes, blobs, wait)
            self._push(envelopes, blobs)

    def enqueue_raw(self, queue: str, body: bytes, priority: int = 0, uuid: str = "") -> None:
        """Put an arbitrary body on ``queue`` (tests of malformed input)."""
        with self.state.lock:
            self.state.push(queue, priority, uuid, body)
            self.state.wake_fetchers()

    # ------------------------------------------------------------------ worker
    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        self._takeover = True

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        deadline = time.monotonic() + block
        loop = asyncio.get_running_loop()
        while True:
            waiter: Waiter = (loop, asyncio.Event())
            with self.state.lock:
                out, dead, next_expiry = self._take(count)
                left = deadline - time.monotonic()
                if not out and left > 0:
                    self.state.fetchers.add(waiter)  # registered under the lock: no enqueue slips past
            if dead and self._storage is not None and not self.fused(self._storage):
                await self._storage.save(dead, self._worker_id)
            if out or left <= 0:
                return out
            try:  # a lease running out also makes work available: wake for that too
                await asyncio.wait_for(waiter[1].wait(), min(left, max(next_expiry - time.monotonic(), 0.001)))
            except asyncio.TimeoutError:
                pass
            finally:
                with self.state.lock:
                    self.state.fetchers.discard(waiter)

    def _take(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome], float]:
        st, now = self.state, time.monotonic()
        rec = self.fused(self._storage)
        takeover, self._takeover = self._takeover, False
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        left = count
        for q in self._queues:
            if left <= 0:
                break
            # abandoned messages first (a predecessor's at takeover, expired leases), then ready ones
            claim = iter(sorted((m for m in st.owned.values() if m.queue == q and (
                m.lease_until < now or (takeover and m.consumer == self._consumer))), key=lambda m: (m.prio, m.id)))
            flat: list[Any] = []
            uuids: list[str] = []
            while left > 0:
                m = next(claim, None) or st.pop_ready(q)
                if m is None:
                    break
                if m.deliveries >= self.max_deliveries:
                    reason = f"delivered {m.deliveries} times without finishing (max_deliveries={self.max_deliveries})"
                    dead += self._to_dead(m, reason, rec)
                    continue
                m.consumer, m.lease_until = self._consumer, now + self.lease_seconds
                m.deliveries += 1
                st.owned[m.id] = m
                flat += (m.prio, m.id, m.body, m.deliveries)
                if m.uuid:
                    uuids.append(m.uuid)
                left -= 1
            if flat:
                if rec:
                    st.mark(uuids, self._worker_id)
                out.append((q, flat))
        next_expiry = min((m.lease_until for m in st.owned.values()), default=now + 3600.0)
        return out, dead, next_expiry

    def _to_dead(self, m: _Msg, reason: str, rec: bool) -> list[Outcome]:
        """Move ``m`` aside; returns the outcome a foreign storage must save (none when fused)."""
        st = self.state
        st.remove(m.id)
        st.dead.setdefault(m.queue, []).append(
            {"id": str(m.id), "u": m.uuid, "d": m.body, "reason": reason, "at": int(time.time() * 1000),
             "prio": m.prio})
        if rec:
            if m.uuid:
                st.fail_record(m.uuid, "dead-lettered: " + reason, self.result_ttl)
            return []
        d = Delivery(m.queue, m.prio, m.id, m.body, m.deliveries)
        try:
            d.envelope = _env_decode(m.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return []
        return [(d, "error", b"\xc0", "dead-lettered: " + reason, "")]

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        rec = self.fused(storage)
        if not rec:
            if retries:
                await self.enqueue(retries, storage)
            await storage.save(outcomes, self._worker_id)
        blobs = core.encode_envelopes(list(retries)) if rec and retries else []
        with self.state.lock:  # one critical section: nobody sees the retry without the parent's result
            if rec:
                if retries:
                    self.state.create_records(retries, blobs, False)
                    self._push(retries, blobs)
                self.state.finish_records(outcomes, self._worker_id, self.result_ttl)
            for o in outcomes:
                self.state.remove(o[0].msg_id)

    async def renew(self, deliveries: Sequence[Delivery]) -> None:
        until = time.monotonic() + self.lease_seconds
        with self.state.lock:
            for d in deliveries:
                m = self.state.owned.get(d.msg_id)
                if m is not None and m.consumer == self._consumer:  # one taken over stays with its new owner
                    m.lease_until = until

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Back to ready at once; the hand-out did not run, so it does not count as a delivery."""
        with self.state.lock:
            for d in deliveries:
                m = self.state.owned.get(d.msg_id)
                if m is not None and m.consumer == self._consumer:
                    m.deliveries = max(m.deliveries - 1, 0)
                    self.state.requeue(m)
            self.state.wake_fetchers()

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        rec = await self.save_dead_records(items, storage)
        with self.state.lock:
            for d, reason in items:
                m = self.state.messages.get(d.msg_id)
                if m is not None:  # gone = settled or dead-lettered by whoever took it over
                    self._to_dead(m, reason, rec)

    async def trim_indexes(self) -> None:
        """Drop expired records (the worker's lease keeper calls this every minute)."""
        with self.state.lock:
            self.state.trim()

    async def dead_letters(self, queue: str, count: int = 100) -> list[dict[str, Any]]:
        """Newest dead-lettered messages of ``queue`` (uuid, reason, time, raw body), keys as in RedisBroker."""
        with self.state.lock:
            return list(reversed(self.state.dead.get(queue, [])[-count:]))
