"""Optional broker capabilities: what a backend may do beyond the core :class:`~qtasks_fast.abc.broker.Broker`.

A backend declares each capability it implements by subclassing it (``class MyBroker(Broker, Cancel,
DeadLetters): ...``); the abstract methods of a declared capability must then exist, so a half-declared one
fails at class creation, not at a user's call. The core checks before use, in one way only::

    require(app.broker, Cancel).cancel(uuid, queue, reason, storage)

which raises :class:`NotSupported` naming the backend, the capability and what to do. Why declared and not
probed (``hasattr``): the declaration is what the contract suite, ``inspect`` and this check all read, and a
test pins the set each built-in backend declares, so a dropped mixin is caught.

Redis declares all of them (:data:`ALL`) but :class:`TransactionalEnqueue`, SQLite and memory all but that and
:class:`BrokerMemory`, PostgreSQL all but :class:`BrokerMemory`. Two need no
methods, only a promise about ``Broker.enqueue``: :class:`Delays` and :class:`UniqueKeys`. A broker without
them refuses such envelopes at enqueue (the core wraps its ``enqueue``), never runs them now.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec

if TYPE_CHECKING:
    from qtasks_fast.abc.query import QueueDepth
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.tasktable import TaskSpec

C = TypeVar("C")
#: how long a worker whose heartbeat stopped is still listed as lost (``workers(include_lost=True)``)
LOST_KEPT = 3600.0


class NotSupported(NotImplementedError):
    """A backend lacks a capability (or an optional storage feature) that a call needs.

    ``capability`` is a capability class (the message names it and where it is defined) or a short text. The
    message says what to do instead: the bundled backends (URL schemes) that have it, or implementing it.
    """

    def __init__(self, backend: object, capability: type | str) -> None:
        self.backend = type(backend).__name__
        if isinstance(capability, type):
            self.capability = capability.__name__
            what = f"{capability_title(capability)} ({capability.__module__}.{capability.__name__})"
            todo = f"implement {capability.__name__} ({capability.__module__}) in {self.backend}"
        else:
            self.capability = what = capability
            todo = "implement it (see qtasks_fast.abc)"
        super().__init__(f"{self.backend} does not support {what}; use a backend that has it "
                         f"({OFFERED_BY.get(self.capability, EVERY_BACKEND)}), or {todo}")


#: the bundled backends, by URL scheme, that every capability not in :data:`OFFERED_BY` is found in
EVERY_BACKEND = "redis://, postgresql://, sqlite:// or memory://"
#: the capabilities only some bundled backends declare, and which (``tests/test_capabilities.py`` checks this
#: against the backends' classes): a refusal must not send a user to a backend that refuses it too
OFFERED_BY: dict[str, str] = {"BrokerMemory": "redis://", "TransactionalEnqueue": "postgresql://"}


def capability_title(capability: type) -> str:
    """What a capability is called in messages: the first line of its docstring, up to the colon."""
    doc = (capability.__doc__ or capability.__name__).strip().splitlines()[0]
    return doc.split(":", 1)[0].rstrip(".")


def require(backend: object, capability: Callable[..., C]) -> C:
    """``backend`` as ``capability`` (a class of this module) when it declares it; otherwise
    :class:`NotSupported` naming both. (Typed as a callable: mypy refuses abstract classes as ``type[C]``.)"""
    assert isinstance(capability, type)
    if isinstance(backend, capability):
        return cast(C, backend)
    raise NotSupported(backend, capability)


def declared(backend: object) -> frozenset[type]:
    """The capabilities of :data:`ALL` that ``backend`` (an object or a class) declares."""
    cls = backend if isinstance(backend, type) else type(backend)
    return frozenset(c for c in ALL if issubclass(cls, c))


# ------------------------------------------------------------------ promises about enqueue
class Delays:
    """delayed delivery (countdown / eta / retry backoff): an envelope whose ``eta`` is later than now is held
    durably by ``enqueue`` (never only in a process' memory) and becomes deliverable when due; the broker
    promotes due envelopes itself (a worker's fetch may do it)."""


class UniqueKeys:
    """unique keys: ``meta[META_UNIQUE] = [key, ttl]`` makes ``enqueue`` skip an envelope whose key was claimed
    within ttl, and return ``{skipped uuid: uuid that holds the key}`` for those.

    The caller's key (``schemas.unique_owner``: key and holder) is given back, only while it still names the
    holder, when the task is cancelled or purged, dead-lettered, or settled ``error``/``cancel`` with no retry
    child."""

    #: seconds a key is held when its envelope names no ttl; the backend factory sets ``config.unique_ttl``
    unique_ttl: float = 3600.0


# ------------------------------------------------------------------ task control
class Cancel(abc.ABC):
    """cancel: of queued, delayed and running tasks."""

    @abc.abstractmethod
    async def cancel(self, uuid: str, queue: str, reason: str, storage: Storage) -> str:
        """Cancel one task: ``"queued"`` (removed, record set to ``cancel``: it never runs, delayed ones
        included), ``"running"`` (held by a worker: a request is sent, see :meth:`cancel_requests`),
        ``"finished"`` (already final: nothing changes) or ``"unknown"``."""

    @abc.abstractmethod
    def cancel_requests(self) -> AsyncIterator[tuple[str, str]]:
        """Worker side: ``(uuid, reason)`` of cancels asked for running tasks (any worker may get any uuid;
        one not running here is ignored). Runs until the worker closes the broker."""


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


class DeadLetters(abc.ABC):
    """dead-letter management: list, requeue and purge what ``Broker.dead_letter`` set aside."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str, count: int = 100) -> list[DeadLetter]:
        """Newest dead-lettered messages of ``queue`` first."""

    @abc.abstractmethod
    async def requeue_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (``ids``, or all of ``queue``'s) back on their queue with a fresh delivery count
        (same uuid; the record goes back to ``new``); return how many."""

    @abc.abstractmethod
    async def purge_dead(self, queue: str, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (``ids`` or all); return how many."""


class Purge(abc.ABC):
    """purge: drop a queue's waiting messages."""

    @abc.abstractmethod
    async def purge(self, queue: str) -> int:
        """Drop every queued and delayed, not running, message of ``queue`` (records set to ``cancel``)."""


class FlushAll(abc.ABC):
    """flush_all: delete everything the app keeps in the backend (QTasks ``flush_all``)."""

    @abc.abstractmethod
    async def flush_all(self, queues: Sequence[str]) -> None:
        """Delete all this app keeps here: every message of ``queues`` (queued, delayed, in flight), dead letter,
        record, captured log, unique key, slot and claim, and the published task table.

        ``queues`` are those the app knows (its tasks', the published table's); add those :meth:`note_queues`
        recorded. Only this ``app_name``'s data: another app's is never touched, whatever its name (``"a:b"`` when
        flushing ``"a"``). The worker registry is kept (it describes live processes, which renew it). Callers
        (``app.flush_all``) refuse while workers are registered: a running worker's reads and leases would
        point at what was deleted (on Redis, its XREADGROUP on a deleted stream fails with NOGROUP).
        """

    async def note_queues(self, queues: Sequence[str]) -> None:
        """Remember, durably, that this app uses ``queues`` though no published task names them (a producer's
        task manager routed a call there), so :meth:`flush_all` flushes them too when a process that never
        routed there calls it. Nothing by default: a broker whose ``flush_all`` deletes every queue of the app
        whatever ``queues`` says (SQLite, memory) needs no list. The list outlives ``flush_all``: a producer notes
        a queue once, before its first call there."""


# ------------------------------------------------------------------ fleet-wide coordination
class Limits(abc.ABC):
    """fleet-wide limits: counting semaphores shared by every worker (concurrency_limit, consumer-name leases)."""

    @abc.abstractmethod
    async def acquire(self, key: str, queue: str, limit: int, token: str, ttl: float) -> bool:
        """Take one of ``limit`` slots of ``key`` for ``token``; False when full. A slot not renewed
        (:meth:`acquire` again with the same token) within ``ttl`` seconds is freed, so a dead worker's slots
        come back."""

    @abc.abstractmethod
    async def release_slot(self, key: str, queue: str, token: str) -> None:
        """Give back a slot taken by :meth:`acquire`."""

    @abc.abstractmethod
    async def slot_holders(self, key: str, queue: str) -> list[str]:
        """The tokens holding slots of ``key`` (expired ones may still show): for log lines that name a holder."""


class Claims(abc.ABC):
    """schedule claims: one claimant per key and period, fleet-wide (leader election of periodic ticks)."""

    @abc.abstractmethod
    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first caller that claims ``key`` within ``ttl`` seconds, fleet-wide."""


class TaskTable(abc.ABC):
    """the published task table: workers publish their tasks, so a client may send them by name
    (qtasks_fast.tasktable)."""

    @abc.abstractmethod
    async def publish_tasks(self, tasks: Mapping[str, TaskSpec]) -> list[str]:
        """Merge a worker's task table into the app's published one, durably (it outlives every worker).

        Per name, ``tasks[name]`` is stored unless the stored entry comes from a newer app version
        (:func:`qtasks_fast.tasktable.merge` decides; apply its result atomically against concurrent
        publishers). Names not in ``tasks`` are kept. Returns the names kept from a newer version.
        """

    @abc.abstractmethod
    async def published_tasks(self) -> dict[str, TaskSpec]:
        """The app's published table, ``{}`` when no worker has published one (producers call this on a miss)."""


# ------------------------------------------------------------------ fleet visibility (the query side)
class WorkerInfo(msgspec.Struct, kw_only=True):
    """One worker process in the app's registry (see :class:`WorkerRegistry`), as ``inspect`` lists it."""

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
    #: set by :meth:`WorkerRegistry.workers` when listing ``include_lost``: no heartbeat for longer than a lease
    lost: bool = False

    @property
    def key(self) -> str:
        """What the registry keys it by: a replacement of the same slot (another pid) is another entry, so a
        SIGKILLed worker ages out instead of being overwritten by its successor."""
        return f"{self.id}@{self.host}:{self.pid}"


class WorkerRegistry(abc.ABC):
    """the worker registry: live worker processes and their heartbeats.

    App-wide: each worker process registers when it starts serving, beats from its lease keeper (every third
    of ``lease_seconds``, never per task) and unregisters when it stops gracefully. A worker is *live* while
    its last heartbeat is younger than ``lease_seconds`` (three missed beats): past that it has lost its
    deliveries to other workers anyway, so a SIGKILLed or frozen one drops out of :meth:`workers` within a
    lease, and its entry is deleted by a later register or listing. Heartbeats are wall-clock times of the
    worker's host: hosts whose clocks disagree by more than a lease make each other look dead.
    """

    @abc.abstractmethod
    async def register_worker(self, info: WorkerInfo) -> None:
        """Add or refresh ``info`` (keyed by :attr:`WorkerInfo.key`); its ``heartbeat`` is the time of the beat."""

    @abc.abstractmethod
    async def unregister_worker(self, info: WorkerInfo) -> None:
        """Remove ``info``'s entry (a graceful stop); removing one that is not there is no error."""

    @abc.abstractmethod
    async def workers(self, include_lost: bool = False) -> list[WorkerInfo]:
        """The live workers of the app, in no particular order.

        ``include_lost`` also lists, with ``lost=True``, entries whose heartbeat stopped (no graceful stop)
        within the last :data:`LOST_KEPT` seconds, so a dashboard can show a worker as lost rather than
        make it vanish; older ones are deleted."""


class QueueStats(msgspec.Struct, kw_only=True):
    """The counts of one queue (see :meth:`QueueStatistics.queue_stats`)."""

    #: ready to be handed out: queued and never fetched, handed back, or delayed and now due
    waiting: int
    #: handed out to a worker and not settled yet (running, prefetched, finished awaiting its settle, or
    #: held by a dead worker until its lease runs out and another takes it over)
    in_flight: int
    #: held until their ``eta`` (retries backing off included)
    delayed: int
    #: in the dead-letter store (``qtasks-fast dlq list``)
    dead: int


class QueueStatistics(abc.ABC):
    """queue statistics: how many messages of a queue wait, run, are delayed or dead-lettered."""

    @abc.abstractmethod
    async def queue_stats(self, queue: str) -> QueueStats:
        """How many messages of ``queue`` wait, are in flight, are delayed and are dead-lettered, now.

        Exact for a queue at rest; while workers run, each count is taken at a slightly different moment.
        A finished message is in none of them (Redis: an acked entry that its stream still holds until
        ``trim_indexes`` trims it is not counted as waiting).
        """

    async def queue_depth(self, queue: str) -> QueueDepth:
        """:meth:`queue_stats` broken down: waiting per priority level, in flight per consumer (the query
        side: :mod:`qtasks_fast.abc.query`). The default refuses; a backend overrides it with the breakdown."""
        raise NotSupported(self, "queue depth (waiting per priority, in flight per worker)")


class TransactionalEnqueue(abc.ABC):
    """transactional enqueue: ``add_task(..., connection=conn)`` writes the task inside the caller's open
    database transaction, so it exists (and runs) only if that transaction commits (the outbox pattern)."""

    @abc.abstractmethod
    async def enqueue_in(self, connection: Any, envelopes: Sequence[Any], storage: Storage,
                         wait: bool = False) -> Mapping[str, str] | None:
        """:meth:`Broker.enqueue` inside ``connection``'s open transaction (a client connection of the backend's
        database, e.g. an asyncpg connection); nothing is visible to workers before it commits, and a rollback
        leaves no trace. Refuses (``ValueError``, one line) a connection that is not in a transaction."""


class BrokerMemory(abc.ABC):
    """memory figures: the broker server's memory use and the risky settings (``inspect``, metrics)."""

    @abc.abstractmethod
    def memory_stats(self) -> dict[str, Any]:
        """``{"used_memory": bytes, "maxmemory": bytes or 0, "maxmemory_policy": ..., "used_ratio": ...,
        "warnings": [one line each]}``; sync (the metrics scrape thread calls it). Raises ``BrokerUnavailable``
        when the server cannot be asked."""


class AuditEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One action taken through a control surface (WebView, REST, gRPC): who did what to what, and when."""

    #: assigned by :meth:`AuditLog.audit` (newest entries have the greatest); "" before it is stored
    id: str = ""
    at: float
    #: who asked: ``"web:<session>"``, ``"api"``, ``"grpc:<peer>"``
    who: str
    #: ``submit``, ``cancel``, ``restart``, ``bulk-cancel``, ``dlq-requeue``, ``purge``, ...
    action: str
    #: what it acted on: a uuid, a queue, a filter
    target: str
    #: what came of it: ``"queued"``, ``"3 of 3"``, ...
    outcome: str = ""


class AuditLog(abc.ABC):
    """the audit log: actions taken through the control surfaces, kept in the backend so the whole fleet's
    dashboards show the same log (app-wide, bounded to the newest :data:`AUDIT_KEPT` entries at least)."""

    @abc.abstractmethod
    async def audit(self, entry: AuditEntry) -> str:
        """Store ``entry`` (its ``id`` is ignored) and return the id given to it."""

    @abc.abstractmethod
    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` entries, newest first."""


#: audit entries a backend keeps at least (older ones may be trimmed)
AUDIT_KEPT = 10_000

#: every capability, in the order messages and ``inspect`` list them
ALL: tuple[type, ...] = (Delays, UniqueKeys, Cancel, DeadLetters, Purge, FlushAll, Limits, Claims, TaskTable,
                         WorkerRegistry, QueueStatistics, BrokerMemory, TransactionalEnqueue, AuditLog)

__all__ = ["ALL", "AUDIT_KEPT", "LOST_KEPT", "AuditEntry", "AuditLog", "BrokerMemory", "Cancel", "Claims",
           "DeadLetter", "DeadLetters", "Delays", "FlushAll", "Limits", "NotSupported", "Purge", "QueueStatistics",
           "QueueStats", "TaskTable", "TransactionalEnqueue", "UniqueKeys", "WorkerInfo", "WorkerRegistry",
           "capability_title", "declared", "require"]
