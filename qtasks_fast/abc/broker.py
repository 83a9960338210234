"""Broker contract: how task envelopes get from producers to workers.

Delivery is **at-least-once**. A message handed out by :meth:`Broker.fetch`
stays owned by the fetching consumer until :meth:`Broker.settle` (result stored,
then acked), :meth:`Broker.release` (handed back) or :meth:`Broker.dead_letter`.
If the consumer dies, the broker must hand the message out again — to a
replacement with the same consumer name at once, to anyone else after the
lease (``lease_seconds``) runs out without :meth:`Broker.renew`. Each hand-out
counts as a delivery; a message delivered ``max_deliveries`` times is
dead-lettered instead of run again.

A custom broker (Kafka, RabbitMQ, ...) subclasses :class:`Broker` and
implements the abstract methods; the worker needs nothing else.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast._corelib import Delivery

if TYPE_CHECKING:
    from qtasks_fast.abc.query import QueueDepth
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.tasktable import TaskSpec

#: how long a worker whose heartbeat stopped is still listed as lost (``workers(include_lost=True)``)
LOST_KEPT = 3600.0

#: (delivery, status, encoded returning, traceback or "", retry child uuid or "")
Outcome = tuple[Delivery, str, bytes, str, str]


class NotSupported(NotImplementedError):
    """This broker does not implement an optional feature."""

    def __init__(self, broker: object, feature: str) -> None:
        super().__init__(f"{type(broker).__name__} does not support {feature}; use the Redis, SQLite or memory "
                         "broker, or implement it (see qtasks_fast.abc.broker)")


class DeadLetter(msgspec.Struct, kw_only=True):
    """One dead-lettered message: why, when, and the call (``envelope`` None when it could not be decoded)."""

    id: str
    uuid: str
    queue: str
    reason: str
    at: float
    priority: int = 0
    task_name: str | None = None
    body: bytes = b""


class WorkerInfo(msgspec.Struct, kw_only=True):
    """One worker process in the app's registry (see :meth:`Broker.register_worker`), as ``inspect`` lists it."""

    #: its consumer name, ``<worker-id>-<slot>``
    id: str
    host: str
    pid: int
    #: worker processes of its pool: the supervisor's ``--processes`` (1 for ``WorkerThread``/``run_worker``)
    processes: int
    queues: list[str]
    concurrency: int
    #: wall-clock times (seconds since the epoch) of its start and of its last heartbeat
    started: float
    heartbeat: float
    #: tasks this process finished ``success`` / otherwise (error, cancel, dead-lettered) since it started
    done: int = 0
    failed: int = 0
    #: CPU use (percent of one core, psutil, averaged since the previous beat) and resident memory in bytes
    cpu_percent: float = 0.0
    rss: int = 0
    #: set by :meth:`Broker.workers` when listing ``include_lost``: no heartbeat for longer than a lease
    lost: bool = False

    @property
    def key(self) -> str:
        """What the registry keys it by: a replacement of the same slot (another pid) is another entry, so a
        SIGKILLed worker ages out instead of being overwritten by its successor."""
        return f"{self.id}@{self.host}:{self.pid}"


class QueueStats(msgspec.Struct, kw_only=True):
    """The counts of one queue (see :meth:`Broker.queue_stats`)."""

    #: ready to be handed out: queued and never fetched, handed back, or delayed and now due
    waiting: int
    #: handed out to a worker and not settled yet (running, prefetched, finished awaiting its settle, or
    #: held by a dead worker until its lease runs out and another takes it over)
    in_flight: int
    #: held until their ``eta`` (retries backing off included)
    delayed: int
    #: in the dead-letter store (``qtasks-fast dlq list``)
    dead: int


class Broker(abc.ABC):
    """Moves encoded :class:`~qtasks_fast.schemas.Envelope` s; knows nothing of task code."""

    #: default lease: a delivery not renewed for this long is taken over
    lease_seconds: float = 30.0
    #: deliveries after which a message goes to the dead-letter store
    max_deliveries: int = 5

    def __init__(self, *, app_name: str = "QueueTasks", priority_levels: int = 10, lease_seconds: float = 30.0,
                 max_deliveries: int = 5, result_ttl: float = 86400.0) -> None:
        """The settings every broker takes from ``GlobalConfig``; consumer state is set by :meth:`start`."""
        self.app_name = app_name
        self.priority_levels = priority_levels
        self.lease_seconds = lease_seconds
        self.max_deliveries = max_deliveries
        self.result_ttl = result_ttl
        self._queues: list[str] = []
        self._consumer = ""
        self._worker_id = ""
        self._storage: Storage | None = None

    # ---------------------------------------------------------------- producer
    @abc.abstractmethod
    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage,
                      wait: bool = False) -> Mapping[str, str] | None:
        """Durably accept a batch; on return every envelope will be delivered (delayed ones when due).

        Returns None, or ``{uuid: holder uuid}`` for envelopes skipped by unique enqueue (see below).

        ``storage`` gets the ``new`` records first (``storage.create(envelopes, wait)``);
        a broker sharing a server with its storage may write both in one round trip.
        """

    def enqueue_sync(self, envelopes: Sequence[Envelope], storage: Storage,
                     wait: bool = False) -> Mapping[str, str] | None:
        """Blocking twin for the sync client; the default runs :meth:`enqueue` on a helper loop."""
        from qtasks_fast.portal import portal

        return portal().run(self.enqueue(envelopes, storage, wait))

    # ------------------------------------------------------------------ worker
    @abc.abstractmethod
    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        """Connect and register ``consumer`` (stable across restarts of one worker slot).

        Each worker calls this on its own shallow copy (``copy.copy``) of the app's
        broker, so attributes set here are per consumer; connection objects are shared.

        Raise ``BrokerUnavailable`` when the broker cannot be reached. ``storage``
        is where records live: the broker marks fetched tasks ``process`` there.
        """

    @abc.abstractmethod
    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        """Return up to ``count`` raw deliveries, waiting at most ``block`` seconds for the first.

        The result is, per queue, a flat list ``[prio, msg_id, raw_bytes, deliveries, ...]``
        that the dispatch core turns into :class:`Delivery` objects. Messages of
        this consumer's previous incarnation and of dead consumers come first;
        within a queue, lower priority numbers come first.
        """

    @abc.abstractmethod
    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        """Enqueue ``retries``, store each outcome with ``storage.save``, *then* ack.

        The order is the at-least-once guarantee: a crash between the two reruns
        the task; it never loses the result of an acked one.
        """

    @abc.abstractmethod
    async def renew(self, deliveries: Sequence[Delivery]) -> Collection[Delivery] | None:
        """Extend the lease of the deliveries this consumer still holds; return those (or None = all).

        Called by the lease keeper every third of the lease for everything the worker holds
        (running, prefetched, finished and not yet settled). A delivery whose lease ran out
        and that another consumer took over stays theirs: it is not renewed and not returned.
        The worker then drops it (never starts it if prefetched, never stores its outcome if
        it was running): a worker frozen (SIGSTOP) or cut off past its lease learns here
        that its prefetched messages now run elsewhere. Returning None (older brokers) means
        "all still held", which keeps the old behaviour: a lost prefetched task runs twice.
        """

    @abc.abstractmethod
    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Hand deliveries back unrun (graceful drain, prefetched backlog); they are redelivered promptly.

        A handed-back message was never run, so it may be redelivered without counting a
        delivery (the Redis broker re-adds it at the tail of its stream with a fresh count).
        """

    @abc.abstractmethod
    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        """Move messages that cannot run (malformed, unknown task, too many deliveries) aside, with a reason."""

    async def save_dead_records(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> bool:
        """For :meth:`dead_letter`: give a foreign storage the ``error`` records; True when fused.

        A fused broker writes those records in its own dead-letter step instead.
        """
        if self.fused(storage):
            return True
        outcomes: list[Outcome] = [(d, "error", b"\xc0", "dead-lettered: " + reason, "") for d, reason in items
                                   if d.envelope is not None]
        if outcomes:
            await storage.save(outcomes, self._worker_id)
        return False

    async def settle_unfused(self, outcomes: Sequence[Outcome], storage: Storage,
                             retries: Sequence[Envelope]) -> bool:
        """For :meth:`settle`: with a foreign storage, enqueue ``retries`` and store the outcomes through it
        first (before the caller acks); True when fused, and the broker does both in its own step."""
        if self.fused(storage):
            return True
        if retries:
            await self.enqueue(retries, storage)
        await storage.save(outcomes, self._worker_id)
        return False

    def fused(self, storage: Storage | None) -> bool:
        """True when this broker writes ``storage``'s records itself, in its own round trips.

        Then it creates ``new`` records in :meth:`enqueue`, marks ``process`` in
        :meth:`fetch` and stores outcomes in :meth:`settle` without calling ``storage``.
        """
        return False

    def marks_started(self, storage: Storage) -> bool:
        """True when :meth:`fetch` itself sets records to ``process`` in ``storage``.

        Otherwise the worker calls ``storage.mark_started`` for each fetched batch.
        """
        return self.fused(storage)

    async def ping(self) -> None:
        """Raise ``BrokerUnavailable`` if the broker cannot be reached."""

    # ------------------------------------------------------------ task control
    # Optional: a broker without one of these raises NotSupported, and the feature that needs it
    # says so at the call. Redis, SQLite and memory brokers implement all of them.
    #
    # Delayed delivery is part of :meth:`enqueue`: an envelope whose ``eta`` is later than now is
    # held durably (never only in a process' memory) and becomes deliverable when due; the broker
    # promotes due envelopes itself (a worker's fetch may do it). ``meta[META_UNIQUE] = [key, ttl]``
    # makes enqueue skip an envelope whose key was claimed within ttl: :meth:`enqueue` returns
    # ``{skipped uuid: uuid that holds the key}`` for those (empty when none was skipped). The caller's key
    # (``schemas.unique_owner``: key and holder) is given back, only while it still names the holder, when
    # the task is cancelled or purged, dead-lettered, or settled ``error``/``cancel`` with no retry child.

    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        """Cancel one task: ``"queued"`` (removed, record set to ``cancel``: it never runs, delayed ones
        included), ``"running"`` (held by a worker: a request is sent, see :meth:`cancel_requests`),
        ``"finished"`` (already final: nothing changes) or ``"unknown"``."""
        raise NotSupported(self, "cancel")

    def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """Worker side: ``(uuid, reason)`` of cancels asked for running tasks (any worker may get any uuid;
        one not running here is ignored). Runs until the worker closes the broker."""
        raise NotSupported(self, "cancel of running tasks")

    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """Newest dead-lettered messages of ``queue`` first."""
        raise NotSupported(self, "dead-letter listing")

    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (``ids``, or all of ``queue``'s) back on their queue with a fresh delivery count
        (same uuid; the record goes back to ``new``); return how many."""
        raise NotSupported(self, "dead-letter requeue")

    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids`` or all); return how many."""
        raise NotSupported(self, "dead-letter purge")

    async def purge(self, queue: str) -> int:
        """Drop every queued and delayed, not running, message of ``queue`` (records set to ``cancel``)."""
        raise NotSupported(self, "purge")

    async def flush_all(self, queues: Sequence[str]) -> None:
        """Delete all this app keeps here (QTasks ``flush_all``): every message of ``queues`` (queued, delayed,
        in flight), dead letter, record, captured log, unique key, slot and claim, and the published task table.

        ``queues`` are those the app knows (its tasks', the published table's); add those :meth:`note_queues`
        recorded. Only this ``app_name``'s data: another app's is never touched, whatever its name (``"a:b"`` when
        flushing ``"a"``). The worker registry is kept (it describes live processes, which renew it). Callers
        (``app.flush_all``) refuse while workers are registered: a running worker's reads and leases would
        point at what was deleted (on Redis, its XREADGROUP on a deleted stream fails with NOGROUP).
        """
        raise NotSupported(self, "flush_all")

    async def note_queues(self, queues: Sequence[str]) -> None:
        """Remember, durably, that this app uses ``queues`` though no published task names them (a producer's
        task manager routed a call there), so :meth:`flush_all` flushes them too when a process that never
        routed there calls it. Nothing by default: a broker whose ``flush_all`` deletes every queue of the app
        whatever ``queues`` says (SQLite, memory) needs no list. The list outlives ``flush_all``: a producer notes
        a queue once, before its first call there."""

    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        """Fleet-wide semaphore: take one of ``limit`` slots of ``key`` for ``token``; False when full.
        A slot not renewed (:meth:`acquire` again with the same token) within ``ttl`` seconds is freed,
        so a dead worker's slots come back."""
        raise NotSupported(self, "concurrency limits")

    async def release_slot(self, key: str, queue: str, token: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        raise NotSupported(self, "concurrency limits")

    async def slot_holders(self, key: str, queue: str) -> list[str]:
        """The tokens holding slots of ``key`` (expired ones may still show): for log lines that name a holder."""
        raise NotSupported(self, "concurrency limits")

    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first caller that claims ``key`` within ``ttl`` seconds, fleet-wide (leader
        election for periodic ticks)."""
        raise NotSupported(self, "claims")

    # ------------------------------------------------------- fleet visibility
    # Optional too (``qtasks-fast inspect`` says when a broker cannot tell). The registry is app-wide:
    # each worker process registers when it starts serving, beats from its lease keeper (every third of
    # ``lease_seconds``, never per task) and unregisters when it stops gracefully. A worker is *live* while
    # its last heartbeat is younger than ``lease_seconds`` (three missed beats): past that it has lost its
    # deliveries to other workers anyway, so a SIGKILLed or frozen one drops out of :meth:`workers` within
    # a lease, and its entry is deleted by a later register or listing. Heartbeats are wall-clock times of
    # the worker's host: hosts whose clocks disagree by more than a lease make each other look dead.

    async def register_worker(self, info: WorkerInfo) -> None:
        """Add or refresh ``info`` (keyed by :attr:`WorkerInfo.key`); its ``heartbeat`` is the time of the beat."""
        raise NotSupported(self, "the worker registry")

    async def unregister_worker(self, info: WorkerInfo) -> None:
        """Remove ``info``'s entry (a graceful stop); removing one that is not there is no error."""
        raise NotSupported(self, "the worker registry")

    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        """The live workers of the app (see above), in no particular order.

        ``include_lost`` also lists, with ``lost=True``, entries whose heartbeat stopped (no graceful stop)
        within the last :data:`LOST_KEPT` seconds, so a dashboard can show a worker as lost rather than
        make it vanish; older ones are deleted."""
        raise NotSupported(self, "the worker registry")

    async def queue_stats(self, queue: str) -> QueueStats:
        """How many messages of ``queue`` wait, are in flight, are delayed and are dead-lettered, now.

        Exact for a queue at rest; while workers run, each count is taken at a slightly different moment.
        A finished message is in none of them (Redis: an acked entry that its stream still holds until
        ``tidy`` trims it is not counted as waiting).
        """
        raise NotSupported(self, "queue statistics")

    async def queue_depth(self, queue: str) -> QueueDepth:
        """:meth:`queue_stats` broken down: waiting per priority level, in flight per consumer (the query
        side: :mod:`qtasks_fast.abc.query`)."""
        raise NotSupported(self, "queue statistics")

    # ------------------------------------------------------- published task table
    # Optional too (qtasks_fast.tasktable): without it, a client must import the tasks it sends by name.
    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Merge a worker's task table into the app's published one, durably (it outlives every worker).

        Per name, ``tasks[name]`` is stored unless the stored entry comes from a newer app version
        (:func:`qtasks_fast.tasktable.merge` decides; apply its result atomically against concurrent
        publishers). Names not in ``tasks`` are kept. Returns the names kept from a newer version.
        """
        raise NotSupported(self, "published task tables")

    async def published_tasks(self) -> dict[str, TaskSpec]:
        """The app's published table, ``{}`` when no worker has published one (producers call this on a miss)."""
        raise NotSupported(self, "published task tables")

    async def close(self) -> None:
        """Release connections; pending deliveries stay owned by the consumer name."""

    def close_sync(self) -> None:
        """Release what :meth:`enqueue_sync` opened (the sync client's ``close()``); the broker reconnects if
        used again. Nothing by default."""
