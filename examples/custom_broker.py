"""A Kafka-style broker to copy when you write your own (Kafka, RabbitMQ, SQS, ...).

Each queue is a *topic*: a few append-only partitions (lists) and, for the one
consumer group of the app, a committed offset per partition. A worker's fetch
reads past the group's read position and leases what it took; settle acks, and
the committed offset moves over every contiguous acked record — exactly how a
Kafka consumer commits. A delivery whose lease runs out (its worker died) or
that is released (graceful stop) is handed out again, counting deliveries, and
is dead-lettered once it reached ``max_deliveries``.

It implements only the abstract methods of :class:`qtasks_fast.abc.Broker`
and declares no optional capability (``qtasks_fast.abc.capabilities``): cancel,
dead-letter management, limits, ... raise ``NotSupported`` where the app needs
them, and the core refuses an ``eta`` or a unique key at enqueue for it.
It is not fused with any storage, so it calls the ``Storage`` API itself:
``create`` at enqueue, ``save`` at settle; the worker calls ``mark_started``.

    app = QueueTasks("demo", broker=KafkaStyleBroker(), storage=InMemoryStorage())

The log lives in this process's memory (as the in-memory backend: producer and
worker in one process); swap ``Topic`` for a real client to go distributed.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc import Broker, Delivery, Outcome
from qtasks_fast.schemas import Envelope

if TYPE_CHECKING:
    from qtasks_fast.abc import Storage


class Lease:
    __slots__ = ("consumer", "until", "deliveries")

    def __init__(self, consumer: str, until: float, deliveries: int) -> None:
        self.consumer, self.until, self.deliveries = consumer, until, deliveries


class Topic:
    """Append-only partitions plus the consumer group's offsets and leases."""

    def __init__(self, partitions: int) -> None:
        self.log: list[list[bytes]] = [[] for _ in range(partitions)]
        self.committed = [0] * partitions  # everything below is acked
        self.position = [0] * partitions  # next offset never handed out
        self.acked: list[set[int]] = [set() for _ in range(partitions)]  # acked above `committed`
        self.leases: dict[tuple[int, int], Lease] = {}  # handed out, not acked
        self.dead: list[tuple[int, int, str]] = []

    def ack(self, p: int, off: int) -> None:
        self.leases.pop((p, off), None)
        self.acked[p].add(off)
        while self.committed[p] in self.acked[p]:  # commit the contiguous prefix
            self.acked[p].discard(self.committed[p])
            self.committed[p] += 1


class KafkaStyleBroker(Broker):
    def __init__(self, partitions: int = 4, **settings: Any) -> None:
        super().__init__(**settings)
        self.partitions = partitions
        self.topics: dict[str, Topic] = {}  # shared by the per-worker copies of this broker
        self.lock = threading.Lock()  # producers may call from other threads (sync client)

    def _topic(self, queue: str) -> Topic:
        return self.topics.setdefault(queue, Topic(self.partitions))

    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage, wait: bool = False) -> None:
        await storage.create(envelopes, wait)  # records first: a worker may fetch the message at once
        with self.lock:
            for e in envelopes:  # one uuid always lands in the same partition
                self._topic(e.queue).log[zlib.crc32(e.uuid.encode()) % self.partitions].append(
                    msgspec.msgpack.encode(e))

    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        self._consumer, self._worker_id, self._queues, self._storage = consumer, worker_id, list(queues), storage
        with self.lock:  # a restarted worker slot takes its predecessor's deliveries back at once
            for q in self._queues:
                for lease in self._topic(q).leases.values():
                    if lease.consumer == consumer:
                        lease.until = 0.0

    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        deadline = time.monotonic() + block
        while True:
            out, dead = self._take(count)
            if dead and self._storage is not None:
                await self._storage.save(dead, self._worker_id)
            if out or time.monotonic() >= deadline:
                return out
            await asyncio.sleep(0.01)  # a real client blocks in its own poll(timeout) instead

    def _take(self, count: int) -> tuple[list[tuple[str, list[Any]]], list[Outcome]]:
        now = time.monotonic()
        out: list[tuple[str, list[Any]]] = []
        dead: list[Outcome] = []
        with self.lock:
            for q in self._queues:
                t, flat = self._topic(q), list[Any]()
                for (p, off), lease in sorted(t.leases.items()):  # redeliveries first: lease ran out
                    if len(flat) >= 4 * count or lease.until >= now:
                        continue
                    if lease.deliveries >= self.max_deliveries:
                        why = f"delivered {lease.deliveries} times without finishing"
                        t.dead.append((p, off, why))
                        t.ack(p, off)  # out of the way: the offset may commit
                        d = Delivery(q, 0, f"{p}:{off}", t.log[p][off], lease.deliveries)
                        d.envelope = msgspec.msgpack.decode(d.raw, type=Envelope)
                        dead.append((d, "error", b"\xc0", "dead-lettered: " + why, ""))
                        continue
                    lease.consumer, lease.until = self._consumer, now + self.lease_seconds
                    lease.deliveries += 1
                    flat += (0, f"{p}:{off}", t.log[p][off], lease.deliveries)
                for p in range(self.partitions):  # then new records, partition by partition
                    while len(flat) < 4 * count and t.position[p] < len(t.log[p]):
                        off = t.position[p]
                        t.position[p] += 1
                        t.leases[(p, off)] = Lease(self._consumer, now + self.lease_seconds, 1)
                        flat += (0, f"{p}:{off}", t.log[p][off], 1)  # Kafka has no priorities: all 0
                if flat:
                    out.append((q, flat))
                count -= len(flat) // 4
        return out, dead

    @staticmethod
    def _where(d: Delivery) -> tuple[int, int]:
        p, off = str(d.msg_id).split(":")
        return int(p), int(off)

    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        if retries:
            await self.enqueue(retries, storage)
        await storage.save(outcomes, self._worker_id)  # result stored *before* the ack: at-least-once
        with self.lock:
            for o in outcomes:
                self._topic(o[0].queue).ack(*self._where(o[0]))

    async def renew(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        # report what this consumer still holds: the worker drops the rest (taken over by another
        # consumer while this one was frozen or cut off) instead of running or settling them
        until = time.monotonic() + self.lease_seconds
        held = []
        with self.lock:
            for d in deliveries:
                lease = self._topic(d.queue).leases.get(self._where(d))
                if lease is not None and lease.consumer == self._consumer:
                    lease.until = until
                    held.append(d)
        return held

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        with self.lock:  # unrun: due again at once, and this hand-out does not count
            for d in deliveries:
                lease = self._topic(d.queue).leases.get(self._where(d))
                if lease is not None and lease.consumer == self._consumer:
                    lease.until, lease.deliveries = 0.0, lease.deliveries - 1

    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        await self.save_dead_records(items, storage)  # the ``error`` records, through the Storage API
        with self.lock:
            for d, reason in items:
                t, (p, off) = self._topic(d.queue), self._where(d)
                t.dead.append((p, off, reason))
                t.ack(p, off)

