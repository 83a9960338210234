"""A worker's start-up: wait out broker outages, then hold its consumer name exclusively.

Why wait instead of exiting: a worker that exits when the broker is down at start
turns an outage into a crash loop (the supervisor restarts it again and again while
Redis is restarting, loading or at ``maxmemory``). So start-up retries with capped
backoff (:class:`~qtasks_fast.faults.Outage`: one line when the outage starts, one
when it ends) while the failure is one that time can fix, and stops at once on
SIGTERM. Any other failure ends the process: a bug is restarted by the supervisor
with backoff, and what no retry can fix (:func:`permanent`: a wrong password, an
ACL without the needed commands, an app that cannot load, :class:`ConfigError`)
exits with a code that makes the supervisor stop, saying why.

Why a name lease: the consumer name ``<worker-id>-<slot>`` is what lets a restarted
worker take over its predecessor's unfinished messages at once. If a process of an
earlier pool still runs under that name (its supervisor was SIGKILLed and it is
still draining, or another host was started with the same ``--worker-id``), both
would run the same messages. So each worker holds a renewable lease on its name
on each queue it serves, through the broker's fleet-wide semaphore
(:meth:`Broker.acquire` with limit 1, renewed by the lease keeper, released at
exit; about one round trip per queue every ``lease_seconds / 3``, none per task);
a worker whose name is held by
another live owner waits, logging once who holds it, until the holder releases
it or the lease runs out. A restarted worker of the same supervisor shares its
owner token, so it takes the name over at once, as before.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from qtasks_fast import faults
from qtasks_fast.abc.capabilities import Delays, Limits, NotSupported, require
from qtasks_fast.exceptions import BrokerRefused, ConfigError, QTasksError
from qtasks_fast.log import get_logger
from qtasks_fast.stopping import sleep_unless_stopped, until_stopped

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Broker
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
T = TypeVar("T")
#: longest wait between two looks at a consumer name held by another owner
NAME_POLL = 1.0


class ConsumerNameLost(QTasksError):
    """Another owner took this worker's consumer name while its lease could not be renewed."""


def new_owner() -> str:
    """An owner token that names its holder: ``host:pid:nonce`` (the nonce tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _in_chain(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(seen, types) for seen in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 5:
        out.append(seen)
        seen = seen.__cause__
    return out


def refused(exc: BaseException) -> bool:
    """True when the broker refused this client (:class:`BrokerRefused`, raised by the backend): a wrong user
    or password, an ACL without the commands, a database number the server does not have (``/99``): no wait
    fixes those, the URL must change."""
    return _in_chain(exc, (BrokerRefused,))


def permanent(exc: BaseException) -> bool:
    """True when no retry can fix ``exc``: the broker refused this client (:func:`refused`), the app cannot
    load, a :class:`ConfigError`. Checked before :func:`faults.transient`; the cause chain counts."""
    from qtasks_fast.loader import AppLoadError

    return refused(exc) or _in_chain(exc, (ConfigError, AppLoadError, ImportError))


def check_capabilities(app: object, broker: Broker) -> None:
    """Refuse to serve tasks the broker cannot run as declared: a ``retry_backoff`` retry is a delayed envelope,
    and a broker without ``Delays`` would refuse it at settle time, after the task ran (a crash per retry)."""
    if isinstance(broker, Delays):
        return
    tasks = getattr(app, "tasks", {})
    backoff = sorted(name for name, tf in tasks.items() if getattr(tf, "retry_backoff", 0))
    if backoff:
        raise ConfigError(f"task(s) {', '.join(backoff)} retry with retry_backoff, a delayed enqueue: "
                          f"{NotSupported(broker, Delays)}; or drop retry_backoff")


async def patiently(stop: asyncio.Event, outage: faults.Outage,
                    call: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
    """``(True, await call())`` once a call succeeds, waiting out outages with ``outage``'s backoff;
    ``(False, None)`` when ``stop`` is set first. A permanent failure, or one not known to be transient
    (a bug), is raised."""
    while True:
        try:
            done, result = await until_stopped(stop, call())
        except Exception as exc:
            if permanent(exc) or not faults.transient(exc):
                raise
            if not await sleep_unless_stopped(stop, outage.failed(exc)):
                return False, None
            continue
        outage.ok()
        return done, result


async def start_broker(w: Worker, stop: asyncio.Event) -> bool:
    """``broker.start`` until it succeeds, waiting out outages; False when ``stop`` is set first."""
    outage = faults.Outage(log, f"worker {w.worker_id} cannot start: the broker is not available")
    done, _ = await patiently(stop, outage, lambda: w.broker.start(w.consumer, w.worker_id, w.queues, w.storage))
    return done


class NameLease:
    """This worker's exclusive, renewable hold on its consumer name (see the module docstring).

    The name is leased per served queue (the semaphore of ``queue``): a name matters only on the
    streams it reads, so two pools with the same ``--worker-id`` on different queues do not wait for
    each other. Queues are taken in sorted order, so two pools sharing several never deadlock.
    """

    def __init__(self, broker: Broker, consumer: str, owner: str, ttl: float, queues: Sequence[str]) -> None:
        self.broker, self.consumer, self.owner, self.ttl = broker, consumer, owner, ttl
        self.queues = sorted(set(queues))
        self.key = f"consumer:{consumer}"
        #: the queues whose lease this worker holds (none when the broker has no semaphore: a custom
        #: broker; the name is then not guarded)
        self.held: list[str] = []

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Take the name on every served queue, waiting while another owner holds it; False when ``stop``
        is set first."""
        outage = faults.Outage(log, f"worker {self.consumer} cannot take its consumer name: the broker is not "
                                    "available")
        waiting_for = ""
        for queue in self.queues:
            while True:
                try:
                    acquire = require(self.broker, Limits).acquire
                    done, got = await patiently(
                        stop, outage, functools.partial(acquire, self.key, queue, 1, self.owner, self.ttl))
                except NotSupported:
                    log.debug("broker %s has no semaphore: consumer name %s is not guarded against a second "
                              "owner", type(self.broker).__name__, self.consumer)
                    return True
                if not done:
                    return False
                if got:
                    self.held.append(queue)
                    break
                holder = await self.holder(queue)
                if holder != waiting_for:
                    waiting_for = holder
                    log.warning("worker %s: its consumer name is held by %s on queue %r (a process of an earlier "
                                "pool still draining, or another pool started with the same --worker-id); waiting "
                                "until it is released or its %.0fs lease runs out, so that no task runs twice",
                                self.consumer, holder, queue, self.ttl)
                if not await sleep_unless_stopped(stop, min(NAME_POLL, self.ttl / 3)):
                    return False
        if waiting_for:
            log.info("worker %s: consumer name released by %s; starting", self.consumer, waiting_for)
        return True

    async def holder(self, queue: str) -> str:
        """Who holds the name, as its owner token (``host:pid:nonce``), for the log."""
        try:
            owners = await require(self.broker, Limits).slot_holders(self.key, queue)
        except Exception:  # noqa: BLE001 - only for the log line
            owners = []
        others = [o for o in owners if o != self.owner]
        return f"owner {others[0]}" if others else "another owner"

    async def renew(self) -> None:
        """Extend the lease (the lease keeper calls this); raise :class:`ConsumerNameLost` when another owner
        took the name meanwhile. Outages propagate: the next beat tries again."""
        for queue in self.held:
            if not await require(self.broker, Limits).acquire(self.key, queue, 1, self.owner, self.ttl):
                self.held.remove(queue)
                raise ConsumerNameLost(
                    f"worker {self.consumer}: its consumer name on queue {queue!r} was taken by "
                    f"{await self.holder(queue)} while this worker could not renew it for {self.ttl:.0f}s (frozen "
                    "or cut off from the broker); exiting so that its tasks do not run twice")

    async def release(self) -> None:
        """Give the name back at exit (best effort: otherwise it frees itself after ``ttl``)."""
        held, self.held = self.held, []
        for queue in held:
            try:
                await require(self.broker, Limits).release_slot(self.key, queue, self.owner)
            except Exception as exc:  # noqa: BLE001
                log.warning("worker %s: could not release its consumer name (%s); it frees itself within %.0fs",
                            self.consumer, faults.describe(exc), self.ttl)
                return


async def global_config_call(storage: object, method: str, worker_id: str) -> None:
    """``start``/``stop`` the GlobalConfig component the app's storage carries (QTasks'
    ``SyncRedisStorage(global_config=...)``), as QTasks' ``storage.start()``/``stop()`` do: while a worker runs,
    ``<name>:GlobalConfig:main`` says ``running``, which QTasks processes (``ping(server=True)``) read. A
    component that fails is logged in one line and the worker serves all the same: the status is a signal for
    others, not something tasks need."""
    component = getattr(storage, "global_config", None)
    if component is None:
        return
    call = getattr(component, method)
    try:
        if inspect.iscoroutinefunction(call):
            await call()
        else:
            await asyncio.to_thread(call)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("worker %s: GlobalConfig %s() failed (%s): QTasks processes reading its status may not see "
                    "this worker", worker_id, method, faults.describe(exc))
