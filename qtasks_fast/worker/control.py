"""Task control inside a worker: cancel requests for tasks it holds, and fleet-wide concurrency limits.

Both cost nothing when unused: the cancel listener is one background task that
sleeps on the broker's request stream, and the limiter exists only when a
registered task has ``concurrency_limit``; tasks without a limit never meet it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.abc.capabilities import Cancel, Limits, NotSupported, require
from qtasks_fast.faults import Outage, transient
from qtasks_fast.log import get_logger, task_label

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
NONE = b"\xc0"  # msgpack of None


# ------------------------------------------------------------------------------------------- cancel
async def cancel_loop(w: Worker) -> None:
    """Apply the broker's cancel requests to the tasks this worker holds, until the worker has drained
    (requests that come during the drain's grace period still stop running tasks).

    A request outlives a broker outage: on a connection error the stream is opened again.
    """
    backoff = 0.1
    outage = Outage(log, f"worker {w.worker_id}: cancel requests unavailable")
    while not w.stopping:
        try:
            requests = require(w.broker, Cancel).cancel_requests()
            async for uuid, reason in requests:
                backoff = 0.1
                outage.ok()
                await cancel_here(w, uuid, reason)
        except NotSupported:
            log.debug("broker %s has no cancel requests; running tasks cannot be cancelled", type(w.broker).__name__)
            return
        except Exception as exc:  # noqa: BLE001 - cancel is best effort: never take running tasks down with it
            if transient(exc):
                await outage.wait(exc)
                continue
            log.exception("cancel listener failed; listening again in %.1fs", backoff)
        await asyncio.sleep(backoff)  # the stream ended or failed: open it again, without spinning
        backoff = min(backoff * 2, 5.0)


async def cancel_here(w: Worker, uuid: str, reason: str) -> bool:
    """Cancel task ``uuid`` if this worker holds it: unrun ones are settled ``cancel``, running ones stopped.

    False when the task is not here (another worker has it, or it already finished).
    """
    reason = reason or "cancelled"
    for d in list(w.backlog):
        if d.envelope.uuid == uuid:
            w.backlog.remove(d)
            await _settle_unrun(w, d, reason)
            return True
    waiter = w.limiter.take(uuid) if w.limiter is not None else None
    if waiter is not None:
        await _settle_unrun(w, waiter, reason)
        return True
    for d in [*w.executor.running, *getattr(getattr(w.executor, "eager", None), "jobs", ())]:
        if d.envelope.uuid == uuid:
            log.info("cancelling running task %s: %s", task_label(d.envelope.task_name, uuid), reason)
            cancel = getattr(w.executor, "cancel", None)
            return bool(cancel(d, reason)) if cancel is not None else False
    return False


async def _settle_unrun(w: Worker, d: Delivery, reason: str) -> None:
    log.info("task %s cancelled before it started: %s", task_label(d.envelope.task_name, d.envelope.uuid), reason)
    w.finish_unrun((d, "cancel", NONE, reason, ""))
    env = d.envelope
    await fire(w, "task_cancel", task=d.handler, task_name=env.task_name, uuid=env.uuid, envelope=env,
               worker_id=w.worker_id, reason=reason, task_func=d.handler, task_broker=env)


async def fire(w: Worker, event: str, **kw: Any) -> None:
    """``app.events.fire(event, **kw)`` when the app has events; a failing handler is logged, not raised."""
    fire_ = getattr(w.app.events, "fire", None)
    if fire_ is None:
        return
    try:
        res = fire_(event, **kw)
        if inspect.isawaitable(res):
            await res
    except Exception:  # noqa: BLE001 - an event handler must not stop the worker
        log.exception("event handler for %r failed", event)


# -------------------------------------------------------------------------------------- limiter
class Limiter:
    """Holds deliveries of tasks with ``concurrency_limit`` until a fleet-wide slot is theirs.

    A waiting delivery stays in ``inflight`` (so its lease is renewed) but takes none of the
    worker's concurrency slots. Acquisition is retried with a short backoff only while some
    delivery waits; a finished task gives its slot back before its result is settled.
    """

    BACKOFF_MIN = 0.02
    BACKOFF_MAX = 0.2

    def __init__(self, w: Worker) -> None:
        self.w = w
        self.waiting: deque[Delivery] = deque()
        #: delivery -> (key, limit) of each slot held by a task of this worker
        self.held: dict[Delivery, tuple[str, int]] = {}
        self.wake = asyncio.Event()
        self._broken: set[str] = set()
        #: the broker refusing slots for a while (unreachable, Redis at maxmemory): logged at start and end
        self.outage = Outage(log, f"worker {w.worker_id}: cannot take concurrency slots")

    @staticmethod
    def limit_of(d: Delivery) -> int | None:
        return getattr(d.handler, "concurrency_limit", None)

    def divert(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Keep the limited deliveries here; return the others (they start at once)."""
        free = []
        for d in deliveries:
            if self.limit_of(d):
                self.waiting.append(d)
            else:
                free.append(d)
        if len(free) != len(deliveries):
            self.wake.set()
        return free

    def take(self, uuid: str) -> Delivery | None:
        """Remove and return the waiting delivery of task ``uuid`` (a cancel), if any."""
        for d in self.waiting:
            if d.envelope.uuid == uuid:
                self.waiting.remove(d)
                return d
        return None

    async def run(self) -> None:
        """Acquire slots for waiting deliveries; sleeps on ``wake`` when none waits."""
        w = self.w
        while True:
            await self.wake.wait()
            self.wake.clear()
            backoff = self.BACKOFF_MIN
            while self.waiting and not w.stopping:
                if await self._round():
                    backoff = self.BACKOFF_MIN
                    continue
                try:
                    await asyncio.wait_for(self.wake.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                self.wake.clear()
                backoff = min(backoff * 2, self.BACKOFF_MAX)

    async def _round(self) -> bool:
        """Try each waiting delivery once (oldest first; a key found full is not asked again this round).

        Starts only as many as the worker has free slots for, so a busy worker does not sit on
        fleet-wide slots that an idle one could use. True when something started.
        """
        w = self.w
        budget = w.concurrency - w.active - len(w.backlog)
        full: set[str] = set()
        started = False
        for d in list(self.waiting):
            if budget <= 0:
                break
            key = "task:" + d.envelope.task_name
            if key in full:
                continue
            limit = self.limit_of(d) or 1
            try:
                ok = await require(w.broker, Limits).acquire(key, d.queue, limit, d.envelope.uuid,
                                                             w.broker.lease_seconds)
            except NotSupported as exc:
                self._unsupported(d, str(exc))
                started = True
                continue
            except Exception as exc:
                if not transient(exc):
                    raise
                self.outage.failed(exc)  # logged once per outage; run() retries with its backoff
                return started
            self.outage.ok()
            if not ok:
                full.add(key)
                continue
            if d not in self.waiting:  # cancelled or handed back while we asked
                await self._release_one(d, key)
                continue
            self.waiting.remove(d)
            self.held[d] = (key, limit)
            budget -= 1
            started = True
            w.backlog.appendleft(d)
            w.start_more()
        return started

    def _unsupported(self, d: Delivery, message: str) -> None:
        if d not in self.waiting:  # cancelled meanwhile: already settled
            return
        self.waiting.remove(d)
        name = d.envelope.task_name
        if name not in self._broken:
            self._broken.add(name)
            log.error("task %s has concurrency_limit but %s", name, message)
        self.w.finish_unrun((d, "error", NONE, f"concurrency_limit of task {name!r} cannot be enforced: "
                             f"{message}", ""))

    async def renew(self) -> None:
        """Keep the slots of running limited tasks (called by the lease keeper, every third of the lease)."""
        ttl = self.w.broker.lease_seconds
        for d, (key, limit) in list(self.held.items()):
            await require(self.w.broker, Limits).acquire(key, d.queue, limit, d.envelope.uuid, ttl)

    async def release(self, deliveries: Iterable[Delivery]) -> None:
        """Give back the slots of ``deliveries`` that hold one (finished, or handed back unrun)."""
        mine = [d for d in deliveries if d in self.held]
        if not mine:
            return
        await asyncio.gather(*(self._release_one(d, self.held.pop(d)[0]) for d in mine))
        self.wake.set()  # a slot of this worker came free: our waiters may take it

    async def _release_one(self, d: Delivery, key: str) -> None:
        try:
            await require(self.w.broker, Limits).release_slot(key, d.queue, d.envelope.uuid)
        except Exception as exc:  # noqa: BLE001 - the slot expires after one lease without renewal
            log.warning("could not give back the concurrency slot of %s (%s); it frees itself within %.0fs",
                        task_label(d.envelope.task_name, d.envelope.uuid), exc, self.w.broker.lease_seconds)

    def hand_back(self) -> list[Delivery]:
        """On drain: the deliveries still waiting, to hand back to the broker unrun."""
        out, self.waiting = list(self.waiting), deque()
        return out
