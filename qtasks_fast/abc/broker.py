"""The core broker contract: how task envelopes get from producers to workers.

**Delivery is at-least-once.** A message handed out by :meth:`Broker.fetch` stays owned by the fetching
consumer until :meth:`Broker.settle` (result stored, then acked), :meth:`Broker.release` (handed back) or
:meth:`Broker.dead_letter`. If the consumer dies, the broker hands the message out again: to a replacement
with the same consumer name at once, to anyone else after the lease (``lease_seconds``) runs out without
:meth:`Broker.renew`. Each hand-out counts as a delivery; a message delivered ``max_deliveries`` times is
dead-lettered instead of run again.

**Errors: one rule, transient or fatal.** A backend raises
:class:`~qtasks_fast.exceptions.BrokerUnavailable` for a condition that time can fix (unreachable, timed out,
locked, failing over, loading) and :class:`~qtasks_fast.exceptions.BrokerFull` (a ``BrokerUnavailable``) when
it refuses new work for lack of memory or space; the worker, the supervisor and the scheduler wait those out
with backoff, never charging a delivery. Everything else is fatal: :class:`~qtasks_fast.exceptions.BrokerRefused`
(wrong credentials, missing permissions, a database the server lacks: the URL must change, a pool stops at
once) or any other exception (a bug: the process ends and the supervisor restarts it). Plain OS network
errors (``ConnectionError``, ``TimeoutError``, ``ECONNRESET``...) count as ``BrokerUnavailable``. The backend
maps its client library's exceptions at its own boundary (see ``qtasks_fast.backends.redis.errors``), so the
core never imports one (:func:`qtasks_fast.faults.transient` knows only these).

A custom broker (Kafka, RabbitMQ, ...) subclasses :class:`Broker`, implements the abstract methods, and
declares the optional capabilities it implements (:mod:`qtasks_fast.abc.capabilities`); the worker needs
nothing else. Without :class:`~qtasks_fast.abc.capabilities.Delays` / ``UniqueKeys`` its ``enqueue`` refuses
envelopes with an ``eta`` / a unique key (``NotSupported``) before they reach it.
"""

from __future__ import annotations

import abc
import functools
import inspect
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

from qtasks_fast._corelib import Delivery
from qtasks_fast.abc.capabilities import (
    LOST_KEPT,
    DeadLetter,
    Delays,
    NotSupported,
    QueueStats,
    UniqueKeys,
    WorkerInfo,
)
from qtasks_fast.schemas.envelope import META_UNIQUE, Minted
from qtasks_fast.url import redact

if TYPE_CHECKING:
    from qtasks_fast.abc.storage import Storage
    from qtasks_fast.schemas import Envelope

#: (delivery, status, encoded returning, traceback or "", retry child uuid or "")
Outcome = tuple[Delivery, str, bytes, str, str]


def backend_repr(backend: object) -> str:
    """``AcmeBroker('kafka://user:***@host', app='shop')``: what ``inspect`` and logs show of a backend that
    defines no ``__repr__`` (not ``<acme.AcmeBroker object at 0x...>``); the URL, when the instance keeps one
    in ``url``, is redacted, so a password never reaches the screen."""
    url, app = getattr(backend, "url", None), getattr(backend, "app_name", None)
    parts = ([repr(redact(url))] if isinstance(url, str) else []) + ([f"app={app!r}"] if app is not None else [])
    return f"{type(backend).__name__}({', '.join(parts)})"


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

    def __repr__(self) -> str:
        return backend_repr(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Why: a broker without delayed delivery or unique keys must refuse such envelopes, not run them now;
        guarding its ``enqueue`` here makes that true of every sender (producer, retries, follow-ups)."""
        super().__init_subclass__(**kwargs)
        if issubclass(cls, Delays) and issubclass(cls, UniqueKeys):
            return
        for name in ("enqueue", "enqueue_sync"):
            fn = cls.__dict__.get(name)
            if fn is not None and not getattr(fn, "_refuses_unsupported", False):
                setattr(cls, name, _refusing(fn))

    # ---------------------------------------------------------------- producer
    @abc.abstractmethod
    async def enqueue(self, envelopes: Sequence[Envelope], storage: Storage,
                      wait: bool = False) -> Mapping[str, str] | None:
        """Durably accept a batch; on return every envelope will be delivered (delayed ones when due).

        Returns None, or ``{uuid: holder uuid}`` for envelopes skipped by a unique key (``UniqueKeys``).
        ``storage`` gets the ``new`` records first (``storage.create(envelopes, wait)``); a broker sharing a
        server with its storage may write both in one round trip.
        """

    def enqueue_sync(self, envelopes: Sequence[Envelope], storage: Storage,
                     wait: bool = False) -> Mapping[str, str] | None:
        """Blocking twin for the sync client; the default runs :meth:`enqueue` on a helper loop."""
        from qtasks_fast.portal import portal

        return portal().run(self.enqueue(envelopes, storage, wait))

    def part_sizes(self, count: int) -> Sequence[int]:
        """How this broker wants a bulk enqueue of ``count`` fresh tasks handed over: one size (the default), or
        several parts for :meth:`enqueue_parts`, which the producer then builds one by one as the broker asks."""
        return (count,)

    async def enqueue_parts(self, parts: Iterable[Sequence[Envelope]], storage: Storage) -> None:
        """:meth:`enqueue` of ONE batch handed over in parts (sizes from :meth:`part_sizes`): all-or-nothing like
        it. Iterating ``parts`` builds them (the producer's ``add_tasks``: minted uuids, no delay, no unique key,
        no middleware), so a broker that writes a batch in one transaction can send each part as it comes and
        let the next be built while its server stores the one before. The default sends them joined."""
        await self.enqueue(Minted(chain.from_iterable(parts)), storage)

    # ------------------------------------------------------------------ worker
    @abc.abstractmethod
    async def start(self, consumer: str, worker_id: str, queues: Sequence[str], storage: Storage) -> None:
        """Connect and register ``consumer`` (stable across restarts of one worker slot).

        Each worker calls this on its own shallow copy (``copy.copy``) of the app's broker, so attributes set
        here are per consumer; connection objects are shared. ``storage`` is where records live.
        """

    @abc.abstractmethod
    async def fetch(self, count: int, block: float) -> list[tuple[str, list[Any]]]:
        """Return up to ``count`` raw deliveries, waiting at most ``block`` seconds for the first.

        The result is, per queue, a flat list ``[prio, msg_id, raw_bytes, deliveries, ...]`` that the
        dispatch core turns into :class:`Delivery` objects. Messages of this consumer's previous incarnation
        (the first fetch after :meth:`start`) and of other consumers whose lease ran out come first; within a
        queue, lower priority numbers come first. Never this live consumer's own messages otherwise, even past
        their lease: it still runs them (a renewal can come late when a CPU-bound task slows the loop), and
        its late :meth:`renew` keeps them.
        """

    @abc.abstractmethod
    async def settle(self, outcomes: Sequence[Outcome], storage: Storage, retries: Sequence[Envelope]) -> None:
        """Enqueue ``retries``, store each outcome with ``storage.save``, *then* ack.

        The order is the at-least-once guarantee: a crash between the two reruns the task; it never loses
        the result of an acked one.
        """

    @abc.abstractmethod
    async def renew(self, deliveries: Sequence[Delivery]) -> Collection[Delivery] | None:
        """Extend the lease of the deliveries this consumer still holds; return those (or None = all).

        Called by the lease keeper every third of the lease for everything the worker holds (running,
        prefetched, finished and not yet settled). A delivery another consumer took over after its lease ran
        out stays theirs: it is not renewed and not returned, and the worker drops it (never starts it if
        prefetched, never stores its outcome if it was running). None means "all still held" (a lost
        prefetched task then runs twice).
        """

    @abc.abstractmethod
    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Hand deliveries back unrun (graceful drain, prefetched backlog); they are redelivered promptly,
        without counting a delivery (they never ran)."""

    @abc.abstractmethod
    async def dead_letter(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> None:
        """Move messages that cannot run (malformed, unknown task, too many deliveries) aside, with a reason;
        their records become ``error`` (see :meth:`save_dead_records`)."""

    async def ping(self) -> None:
        """Raise ``BrokerUnavailable`` (or ``BrokerRefused``) if the broker cannot be used."""

    async def close(self) -> None:
        """Release connections; pending deliveries stay owned by the consumer name."""

    def close_sync(self) -> None:
        """Release what :meth:`enqueue_sync` opened (the sync client's ``close()``); nothing by default."""

    # ------------------------------------------------- hooks the worker calls (defaults do nothing)
    def recover(self, held: Iterable[Delivery]) -> None:
        """Called after a failed :meth:`fetch`, with the deliveries the worker still holds: the fetch may
        have run and only its reply been lost, so messages may now belong to this consumer unseen. A broker
        that can tell takes them back on its next fetch (except ``held``); others wait for their lease."""

    async def trim_indexes(self) -> None:
        """Housekeeping the lease keeper runs about once a minute per worker (expired records, indexes)."""

    # ------------------------------------------------- fused storage: one round trip for both
    def fused(self, storage: Storage | None) -> bool:
        """True when this broker writes ``storage``'s records itself, in its own round trips: it creates
        ``new`` records in :meth:`enqueue`, marks ``process`` in :meth:`fetch` and stores outcomes in
        :meth:`settle` without calling ``storage``."""
        return False

    def marks_started(self, storage: Storage) -> bool:
        """True when :meth:`fetch` itself sets records to ``process``; otherwise the worker calls
        ``storage.mark_started`` for each fetched batch."""
        return self.fused(storage)

    async def save_dead_records(self, items: Sequence[tuple[Delivery, str]], storage: Storage) -> bool:
        """For :meth:`dead_letter`: give a foreign storage the ``error`` records; True when fused (the broker
        writes them in its own dead-letter step)."""
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


def refuse_unsupported(broker: object, envelopes: Sequence[Envelope]) -> None:
    """``NotSupported`` for an envelope that needs a capability ``broker`` lacks (a future ``eta`` without
    ``Delays``, a unique key without ``UniqueKeys``), before anything of the batch is written."""
    delays, unique = isinstance(broker, Delays), isinstance(broker, UniqueKeys)
    now = time.time()
    for e in envelopes:
        if not delays and e.eta > now:
            raise NotSupported(broker, Delays)
        if not unique and e.meta and META_UNIQUE in e.meta:
            raise NotSupported(broker, UniqueKeys)


def _refusing(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (an ``enqueue``/``enqueue_sync``) preceded by :func:`refuse_unsupported`."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def checked(self: Broker, envelopes: Sequence[Envelope], *args: Any, **kwargs: Any) -> Any:
            refuse_unsupported(self, envelopes)
            return await fn(self, envelopes, *args, **kwargs)
    else:
        @functools.wraps(fn)
        def checked(self: Broker, envelopes: Sequence[Envelope], *args: Any, **kwargs: Any) -> Any:
            refuse_unsupported(self, envelopes)
            return fn(self, envelopes, *args, **kwargs)
    checked._refuses_unsupported = True  # type: ignore[attr-defined]
    return checked


# the optional capabilities' types, importable from here as before the split (qtasks_fast.abc.capabilities)
__all__ = ["LOST_KEPT", "Broker", "DeadLetter", "Delivery", "NotSupported", "Outcome", "QueueStats", "WorkerInfo",
           "refuse_unsupported"]
