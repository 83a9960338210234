"""The shared state of the in-process backend: messages, delayed messages, records, keys, slots, waiters.

An :class:`InMemoryState` is what an ``InMemoryBroker`` and an
``InMemoryStorage`` share to fuse. The sync client may call from another
thread, so the state is guarded by a ``threading.Lock``; methods here expect it
held. Waiters of any loop are woken with ``loop.call_soon_threadsafe``. Leases,
key and slot expiries use ``time.monotonic`` (one process); ``eta`` is wall
time, as it comes from the envelope.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import msgspec

from qtasks_fast.abc.broker import DeadLetter, Outcome, WorkerInfo
from qtasks_fast.abc.capabilities import AUDIT_KEPT, AuditEntry
from qtasks_fast.querylib import EVENTS_KEPT
from qtasks_fast.schemas import META_RESTART_OF, META_UNIQUE, Envelope, Task, task_from_envelope, ts_to_dt, unique_owner
from qtasks_fast.tasktable import TaskSpec

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
    __slots__ = ("id", "queue", "prio", "uuid", "body", "consumer", "lease_until", "deliveries", "due")

    def __init__(self, msg_id: int, queue: str, prio: int, uuid: str, body: bytes) -> None:
        self.id, self.queue, self.prio, self.uuid, self.body = msg_id, queue, prio, uuid, body
        self.consumer: str | None = None
        self.lease_until = 0.0
        self.deliveries = 0
        self.due = 0.0


class _Record:
    __slots__ = ("queue", "name", "status", "blob", "created", "updated", "returning", "traceback", "worker_id",
                 "retry_child", "awaited", "expires_at", "deliveries", "started", "finished", "restart_of")

    def __init__(self, queue: str, blob: bytes, now: float, awaited: bool, env: Envelope) -> None:
        self.queue, self.blob, self.updated, self.awaited = queue, blob, now, awaited
        self.created = env.created_at or now  # the envelope's time: lists order by it
        self.name = env.task_name
        self.restart_of: str | None = env.meta.get(META_RESTART_OF) if env.meta else None
        self.started: float | None = None  # wall time of the (last) hand-out to a worker
        self.finished: float | None = None  # wall time the final status was stored
        self.status = "new"
        self.returning: bytes | None = None
        self.traceback: str | None = None
        self.worker_id: str | None = None
        self.retry_child: str | None = None
        self.expires_at: float | None = None  # time.monotonic() deadline, set once final
        self.deliveries = 1  # of the message, once final

    def task(self) -> Task:
        return task_from_envelope(_env_decode(self.blob), self.status, updated=self.updated,
                                  returning=self.returning or b"", traceback=self.traceback,
                                  retry_child=self.retry_child, worker_id=self.worker_id, queue=self.queue,
                                  created=ts_to_dt(self.created), deliveries=self.deliveries)


class Listener:
    """One worker's inbox of cancel requests (see ``InMemoryBroker.cancel_requests``)."""

    __slots__ = ("items", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: deque[tuple[str, str]] = deque()
        self.waiter: Waiter = (loop, asyncio.Event())


class InMemoryState:
    """Messages, records and waiters of one in-process backend. Methods below ``lock`` expect it held."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.messages: dict[int, _Msg] = {}
        self.owned: dict[int, _Msg] = {}  # handed out, not settled
        self.ready: dict[str, list[tuple[int, int]]] = {}  # per queue heap of (prio, id)
        self.delayed: dict[int, _Msg] = {}  # not yet due
        self.due: list[tuple[float, int]] = []  # heap of (eta, id) over ``delayed`` (stale ids skipped)
        self.dead: dict[str, list[DeadLetter]] = {}
        self.records: dict[str, _Record] = {}
        self.fetchers: set[Waiter] = set()
        #: per uuid, what ``InMemoryStorage.wait`` parks on (anything with ``wake()``, called under ``lock``)
        self.watchers: dict[str, set[Any]] = {}
        self.keys: dict[str, tuple[str, float]] = {}  # unique/claim key -> (holder, expiry)
        self.slots: dict[tuple[str, str], dict[str, float]] = {}  # (queue, key) -> {token: expiry}
        self.cancels: dict[int, tuple[str, str]] = {}  # msg id -> (uuid, reason) asked while it ran
        self.listeners: set[Listener] = set()
        #: (queue, uuid) -> (monotonic expiry, captured log lines) (LogCapture)
        self.logs: dict[tuple[str, str], tuple[float, list[str]]] = {}
        #: the worker registry: ``WorkerInfo.key`` -> entry (heartbeat in wall time, as on the other backends)
        self.workers: dict[str, WorkerInfo] = {}
        #: the published task table (qtasks_fast.tasktable): name -> spec
        self.task_table: dict[str, TaskSpec] = {}
        #: the event feed (query side): per queue, the last :data:`EVENTS_KEPT` status changes as
        #: ``(id, uuid, task_name, queue, status, at, worker)``; ids count up across queues
        self.events: dict[str, deque[tuple[int, str, str, str, str, float, str | None]]] = {}
        self.last_event = 0
        #: readers blocked in ``events(block=...)``, woken by the next status change
        self.event_waiters: set[Waiter] = set()
        #: the audit log (``AuditLog``): the newest entries, oldest first; kept by ``flush_all`` like the registry
        self.audit: deque[AuditEntry] = deque(maxlen=AUDIT_KEPT)
        self.audit_seq = 0

    # ---------------------------------------------------------------- messages
    def push(self, queue: str, prio: int, uuid: str, body: bytes, eta: float = 0.0) -> None:
        m = _Msg(next(self._ids), queue, prio, uuid, body)
        if eta and eta > time.time():
            m.due = eta
            self.delayed[m.id] = m
            heapq.heappush(self.due, (eta, m.id))
            return
        self.messages[m.id] = m
        heapq.heappush(self.ready.setdefault(queue, []), (prio, m.id))

    def promote(self) -> float:
        """Make due delayed messages ready; returns the next due time (``inf`` when none)."""
        now = time.time()
        while self.due:
            eta, msg_id = self.due[0]
            m = self.delayed.get(msg_id)
            if m is None:  # cancelled or purged meanwhile
                heapq.heappop(self.due)
                continue
            if eta > now:
                return eta
            heapq.heappop(self.due)
            del self.delayed[msg_id]
            self.messages[msg_id] = m
            heapq.heappush(self.ready.setdefault(m.queue, []), (m.prio, m.id))
        return float("inf")

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
        if self.cancels:
            self.cancels.pop(msg_id, None)
        return self.messages.pop(msg_id, None)

    def wake_fetchers(self) -> None:
        for w in self.fetchers:
            wake(w)

    def claim_unique(self, envelopes: Sequence[Envelope], default_ttl: float) -> dict[str, str]:
        """Claim ``META_UNIQUE`` keys; ``{skipped uuid: holder}`` (a re-sent uuid is skipped too)."""
        skipped: dict[str, str] = {}
        now = time.monotonic()
        for env in envelopes:
            spec = env.meta.get(META_UNIQUE) if env.meta else None
            if not spec:
                continue
            key, ttl = f"u:{env.queue}:{spec[0]}", (spec[1] if len(spec) > 1 and spec[1] else default_ttl)
            held = self.keys.get(key)
            if held is not None and held[1] > now:
                skipped[env.uuid] = held[0]
            else:
                self.keys[key] = (env.uuid, now + float(ttl))
        return skipped

    def release_unique(self, env: Envelope | None) -> None:
        """Give back the caller's unique key of ``env`` (ended in error or cancel), if it still names its holder."""
        owner = unique_owner(env) if env is not None and env.meta else None
        if owner is not None:
            key = f"u:{env.queue}:{owner[0]}"  # type: ignore[union-attr]
            held = self.keys.get(key)
            if held is not None and held[0] == owner[1]:
                del self.keys[key]

    # ----------------------------------------------------------------- records
    def event(self, uuid: str, rec: _Record, at: float) -> None:
        """Append ``rec``'s current status to the feed of its queue (and wake blocked readers)."""
        self.last_event += 1
        feed = self.events.get(rec.queue)
        if feed is None:
            feed = self.events[rec.queue] = deque(maxlen=EVENTS_KEPT)
        feed.append((self.last_event, uuid, rec.name, rec.queue, rec.status, at, rec.worker_id))
        if self.event_waiters:
            for w in self.event_waiters:
                wake(w)

    def create_records(self, envelopes: Sequence[Envelope], blobs: Sequence[bytes], wait: bool) -> None:
        now = time.time()
        for env, blob in zip(envelopes, blobs, strict=True):
            rec = self.records[env.uuid] = _Record(env.queue, blob, now, wait, env)
            self.event(env.uuid, rec, now)

    def finish_records(self, outcomes: Sequence[Outcome], worker_id: str, ttl: float) -> None:
        now, expires = time.time(), time.monotonic() + ttl
        for d, status, ret, tb, child in outcomes:
            env = d.envelope
            assert env is not None, "settled deliveries always carry their envelope"
            rec = self.records.get(env.uuid)
            if rec is None:  # record gone (expired, foreign producer): the result still reports
                rec = self.records[env.uuid] = _Record(d.queue, msgspec.msgpack.encode(env), now, False, env)
            rec.status, rec.returning, rec.updated, rec.finished = status, ret, now, now
            rec.traceback, rec.retry_child = tb or None, child or None
            rec.worker_id, rec.expires_at = worker_id or rec.worker_id, expires
            rec.deliveries = d.deliveries or 1
            self.event(env.uuid, rec, now)
            self.notify(env.uuid)

    def end_record(self, uuid: str, status: str, traceback: str, ttl: float, deliveries: int = 0) -> None:
        """Finish a record the broker itself decided on (dead letter: ``error``; cancel, purge: ``cancel``);
        ``deliveries`` when known (dead letters)."""
        rec = self.records.get(uuid)
        if rec is not None:
            if deliveries:
                rec.deliveries = deliveries
            rec.status, rec.traceback, rec.returning = status, traceback, None
            rec.updated = rec.finished = time.time()
            rec.expires_at = time.monotonic() + ttl
            self.event(uuid, rec, rec.finished)
            self.notify(uuid)

    def renew_record(self, uuid: str) -> None:
        """Back to ``new`` (a requeued dead letter)."""
        rec = self.records.get(uuid)
        if rec is not None:
            rec.status, rec.updated, rec.expires_at = "new", time.time(), None
            rec.traceback = rec.returning = rec.retry_child = rec.worker_id = None
            rec.started = rec.finished = None
            self.event(uuid, rec, rec.updated)

    def unmark(self, uuid: str) -> None:
        """Back to ``new`` from ``process`` (a delivery handed back unrun: it waits again, run by no one)."""
        rec = self.records.get(uuid)
        if rec is not None and rec.status == "process":
            rec.status, rec.worker_id, rec.started, rec.updated = "new", None, None, time.time()
            self.event(uuid, rec, rec.updated)

    def mark(self, uuids: Sequence[str], worker_id: str) -> None:
        now = time.time()
        for u in uuids:
            rec = self.records.get(u)
            if rec is not None:
                rec.status, rec.worker_id, rec.updated, rec.started = "process", worker_id, now, now
                self.event(u, rec, now)

    def notify(self, uuid: str) -> None:
        for w in self.watchers.get(uuid, ()):
            w.wake()

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
        for key in [k for k, (_, exp) in self.keys.items() if exp <= now]:
            del self.keys[key]
        for lk in [k for k, (exp, _) in self.logs.items() if exp <= now]:
            del self.logs[lk]

    def append_logs(self, queue: str, uuid: str, lines: Sequence[str], ttl: float) -> None:
        _, kept = self.logs.get((queue, uuid), (0.0, []))
        self.logs[(queue, uuid)] = (time.monotonic() + ttl, [*kept, *lines])

    def get_logs(self, queue: str, uuid: str) -> list[str]:
        exp, lines = self.logs.get((queue, uuid), (0.0, []))
        if exp <= time.monotonic():
            self.logs.pop((queue, uuid), None)
            return []
        return list(lines)
