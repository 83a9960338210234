"""One worker process: wires fetcher, executor, settler and lease keeper together, and drains on stop.

The settler is the at-least-once point: outcomes are buffered, and each flush
stores results and acks in one broker call. A delivery leaves ``inflight`` (and
stops being renewed) only once that call succeeded; if the broker is down the
flush is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.config import effective_prefetch
from qtasks_fast.exceptions import ConfigError
from qtasks_fast.faults import Outage, describe, transient
from qtasks_fast.log import get_logger
from qtasks_fast.tasktable import publish
from qtasks_fast.worker.apart import settle_apart
from qtasks_fast.worker.control import Limiter, cancel_loop, fire
from qtasks_fast.worker.eager import RunState, run_core
from qtasks_fast.worker.executor import Executor
from qtasks_fast.worker.fetcher import fetch_loop
from qtasks_fast.worker.followups import bind_feeds, use_app
from qtasks_fast.worker.lease import lease_loop
from qtasks_fast.worker.ownership import owned
from qtasks_fast.worker.registry import Registration
from qtasks_fast.worker.startup import NameLease, check_capabilities, global_config_call, new_owner, start_broker
from qtasks_fast.worker.summary import Summary

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome
    from qtasks_fast.app import BaseQueueTasks
    from qtasks_fast.plugins import Plugins
    from qtasks_fast.schemas import Envelope

log = get_logger("worker")


def _prio(d: Delivery) -> int:
    return d.prio  # type: ignore[no-any-return]


class Worker(RunState):
    """Runs tasks of ``app`` from ``queues`` as consumer ``<worker_id>-<slot>``.

    Its per-task fields (counters, backlog, outcome buffer, wake-ups) are those of ``RunState`` (``_run.pyx``):
    typed, so the compiled per-task path reads them as struct members."""

    def __init__(self, app: BaseQueueTasks, worker_id: str = "w", slot: int = 0, concurrency: int | None = None,
                 queues: Sequence[str] | None = None, block_seconds: float = 1.0, owner: str | None = None,
                 processes: int = 1) -> None:
        self.app = app
        self.worker_id = f"{worker_id}-{slot}"
        self.consumer = self.worker_id
        #: who holds the consumer name (see worker/startup.py); a supervisor gives all its workers its own,
        #: so a restarted worker takes the name over at once while a leftover of another pool blocks it
        self.owner = owner or new_owner()
        self.name_lease: NameLease | None = None
        self.concurrency = concurrency or app.config.concurrency
        self.queues = list(queues or app.task_queues)
        self.block_seconds = block_seconds
        broker, self.storage = app._resolve()
        # start() gives a broker per-consumer state (name, takeover mode); a shallow copy keeps two
        # workers in one process (tests, WorkerThread) from sharing it, while connections stay shared.
        self.broker = copy.copy(broker)
        #: deliveries this worker owns until their outcome is settled (renewed by the lease keeper)
        self.inflight: set[Delivery] = set()
        #: of those, the ones that finished and wait for the settler: they no longer take a slot, so the
        #: next fetch overlaps the current settle; capped so a slow store applies back-pressure
        self.unsettled = 0
        self.max_unsettled = 2 * app.config.batch_size
        #: fetched but not started: a finished task's slot is refilled from here without a round trip
        self.backlog: deque[Delivery] = deque()
        self.prefetch = effective_prefetch(self.concurrency, app.config.prefetch)
        #: monotonic time until which every lease held here is known valid (see ownership.py): past it, a
        #: prefetched delivery is started, and an outcome settled, only after a renewal confirmed it is ours
        self.leases_until = time.monotonic() + self.broker.lease_seconds
        #: running or finished deliveries another consumer took over: their outcomes are not settled
        self.lost: set[Delivery] = set()
        self._confirming: asyncio.Task[None] | None = None
        self._settling: Sequence[Outcome] = ()
        self.active = 0  # tasks started and not finished
        self._starting = False
        self.slot_free = asyncio.Event()
        self.stopping = False
        self._done: list[Outcome] = []
        self._retries: list[Envelope] = []
        self._done_event = asyncio.Event()
        self._settled_all = asyncio.Event()
        self.executor = Executor(self.worker_id, app.config.threads, self._on_done, app.config.validate_args)
        self.executor.worker = self
        #: set by :meth:`run` when a registered task has ``concurrency_limit``; None keeps the hot path as it was
        self.limiter: Limiter | None = None
        #: the app's plugins when it has any (looked up once by :meth:`run`); ``_on_save``: a plugin listens
        #: to ``storage_save``, fired once per settled batch
        self.plugins: Plugins | None = None
        self._on_save = False
        #: this process's entry in the worker registry (``inspect``); ``processes``: the size of its pool
        self.registration = Registration(self.broker, self.worker_id, self.queues, self.concurrency, processes,
                                         counts=self.outcome_counts)
        #: how many worker processes its pool has (a plugin holding a port lets one of them serve it)
        self.processes = processes
        #: outcomes settled so far (the summary line's count; per batch, off the per-task path)
        self.settled = 0
        #: of those, not ``success`` (error, cancel); and messages this worker dead-lettered (for the registry)
        self.settled_failed = 0
        self.dead_lettered = 0

    def outcome_counts(self) -> tuple[int, int]:
        """``(done, failed)`` for the worker registry: successes, and errors, cancels and dead letters."""
        return self.settled - self.settled_failed, self.settled_failed + self.dead_lettered

    @property
    def free_slots(self) -> int:
        """How many more deliveries may be fetched now: running + backlog stay within concurrency + prefetch."""
        held = len(self.inflight) - self.unsettled
        if self.limiter is not None:  # deliveries waiting for a fleet-wide slot take no slot here (up to a cap)
            held -= min(len(self.limiter.waiting), self.concurrency)
        return min(self.concurrency + self.prefetch - held, self.max_unsettled - self.unsettled)

    def dispatch(self, deliveries: Sequence[Delivery]) -> None:
        """Start what fits in ``concurrency``; keep the rest in the backlog (limited tasks: in the limiter)."""
        if self.lost:  # rare: a held-back last attempt whose lease another worker took over (ownership.py)
            gone = self.lost.intersection(deliveries)
            self.lost -= gone
            deliveries = [d for d in deliveries if d not in gone]
        if self.limiter is not None:
            deliveries = self.limiter.divert(deliveries)
        backlog = self.backlog
        if backlog and deliveries and deliveries[0].prio < backlog[-1].prio:
            # more urgent work than what already waits here (a fetch returns lower numbers first):
            # it goes ahead of the prefetched backlog instead of behind it; stable, so FIFO within a level
            merged = sorted([*backlog, *deliveries], key=_prio)
            backlog.clear()
            backlog.extend(merged)
        else:
            backlog.extend(deliveries)
        self.start_more()

    #: start backlog deliveries while slots are free (compiled: ``_run.start_more``; ``confirmed=True`` after a
    #: lease renewal confirmed them, see ownership.py)
    start_more = run_core.start_more
    #: a task finished: queue its outcome and followups (retry child, next chain step), free its slot, start the
    #: next, wake the settler (compiled: ``_run.task_done``)
    _on_done = run_core.task_done

    def finish_unrun(self, outcome: Outcome) -> None:
        """Settle a delivery that never started (cancelled while waiting; a limit the broker cannot keep)."""
        if outcome[1] == "cancel":
            self.executor.n_cancelled += 1
        else:
            self.executor.n_failed += 1
        self._done.append(outcome)
        self.unsettled += 1
        self._done_event.set()
        self.slot_free.set()

    async def settle_loop(self) -> None:
        # An outage (broker unreachable, Redis at maxmemory, a replica that became read-only) is waited
        # out: the outcomes stay buffered and their deliveries in flight, renewed by the lease keeper,
        # so no other worker takes them and no delivery is charged; the same settle is sent again.
        outage = Outage(log, f"worker {self.worker_id}: cannot store results (tasks stay leased meanwhile)",
                        first=0.05)
        while True:
            await self._done_event.wait()
            self._done_event.clear()
            if not self._done:
                continue
            outcomes, retries = self._done, self._retries
            self._done, self._retries = [], []
            if self.limiter is not None and self.limiter.held:
                await self.limiter.release([o[0] for o in outcomes])
            if self.lost or time.monotonic() >= self.leases_until:  # rare: a lease may be lost (ownership.py)
                outcomes, retries = await owned(self, outcomes, retries)
                if not outcomes:
                    continue
            while True:
                try:
                    await self.broker.settle(outcomes, self.storage, retries)
                    break
                except Exception as exc:
                    if not transient(exc):
                        # not an outage: one by one, so one outcome the backend cannot store does not re-run the
                        # others; failing that, crash the worker (the supervisor restarts it and the replacement
                        # reruns these unacked tasks) rather than hang with them in flight
                        try:
                            await settle_apart(self.broker, self.storage, outcomes, retries, self.worker_id, exc)
                            break
                        except Exception:
                            log.exception("worker %s: cannot store %d results; stopping this worker",
                                          self.worker_id, len(outcomes))
                            raise
                    await outage.wait(exc)
            if outage.down:
                outage.ok()
            if self._on_save:
                await self.plugins.fire("storage_save", storage=self.storage, outcomes=outcomes,  # type: ignore[union-attr]
                                        worker=self)
            run_core.settled(self, outcomes)  # counters, and the deliveries leave inflight (compiled: _run.pyx)
            self.slot_free.set()
            if not self.inflight:
                self._settled_all.set()

    async def dead_letter(self, items: list[tuple[Delivery, str]]) -> None:
        for d, reason in items:
            name = d.envelope.task_name if d.envelope is not None else "?"
            uuid = d.envelope.uuid if d.envelope is not None else "?"
            log.error("dead-lettering message %s of queue %r (task %s[%s]): %s", d.msg_id, d.queue, name, uuid,
                      reason)
        outage = Outage(log, f"worker {self.worker_id}: cannot dead-letter {len(items)} messages", first=0.5)
        while True:
            try:
                await self.broker.dead_letter(items, self.storage)
                outage.ok()
                self.dead_lettered += len(items)
                return
            except Exception as exc:
                if transient(exc):
                    await outage.wait(exc)
                    continue
                # a message that cannot even be dead-lettered must not stop the fetcher
                log.exception("worker %s cannot dead-letter %d messages; they come back after the lease and the "
                              "broker dead-letters them at max_deliveries", self.worker_id, len(items))
                return

    async def release(self, deliveries: list[Delivery]) -> None:
        if self.limiter is not None:
            await self.limiter.release(deliveries)
        try:
            await self.broker.release(deliveries)
        except Exception as exc:  # they come back to this consumer name or another after the lease anyway
            if not transient(exc):
                raise
            log.warning("worker %s: could not hand back %d deliveries (%s); they return after the lease",
                        self.worker_id, len(deliveries), describe(exc))
        for d in deliveries:
            self.inflight.discard(d)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then drain within ``config.drain_seconds``."""
        app = self.app
        use_app(app)
        bind_feeds(app)
        check_capabilities(app, self.broker)
        if any(getattr(tf, "concurrency_limit", None) for tf in app.tasks.values()):
            self.limiter = Limiter(self)
        if not await self.start_up(stop):
            return
        await global_config_call(self.storage, "start", self.worker_id)
        await fire(self, "starting", worker=self, broker=self.broker, starter=self)
        plugins = getattr(app, "plugins", None)
        if plugins:
            self.plugins = plugins
            self._on_save = bool(plugins.get("storage_save"))
            await self._plugins_up()
        await self.registration.beat(self.broker.lease_seconds / 3)
        log.info("worker %s serving queues %s with %d tasks registered (concurrency %d)", self.worker_id,
                 ",".join(self.queues), len(app.tasks), self.concurrency)
        await fire(self, "worker_running", worker=self, broker=self.broker, number=0)
        settler = asyncio.create_task(self.settle_loop(), name="settler")
        lease = asyncio.create_task(lease_loop(self), name="lease")
        fetcher = asyncio.create_task(fetch_loop(self), name="fetcher")
        stopper = asyncio.create_task(stop.wait())
        background = {fetcher, settler, lease}
        if self.limiter is not None:
            background.add(asyncio.create_task(self.limiter.run(), name="limiter"))
        # not in ``background``: the cancel listener ends by itself when the broker cannot send cancel
        # requests, and the summary's end is not the worker's either
        helpers = {asyncio.create_task(cancel_loop(self), name="cancel listener")}
        summary = Summary(self)
        every = app.config.log_summary_seconds
        if every > 0:
            helpers.add(asyncio.create_task(summary.run(every), name="summary"))
        done, _ = await asyncio.wait(background | {stopper}, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t in background and not t.cancelled() and t.exception() is not None]
        if failed:
            for t in (*background, stopper, *helpers):
                t.cancel()
            log.error("worker %s: %s failed; exiting so the supervisor restarts it", self.worker_id,
                      failed[0].get_name())
            raise failed[0].exception()  # type: ignore[misc]
        await fire(self, "stopping", worker=self, broker=self.broker, starter=self)
        await self.drain(fetcher)
        await fire(self, "worker_stopping", worker=self, broker=self.broker, number=0)
        for t in (*background, stopper, *helpers):
            t.cancel()
        # let them unwind (closing their connections) rather than be destroyed pending at loop close
        await asyncio.wait({*background, stopper, *helpers}, timeout=2)
        if self.plugins is not None:
            await self._plugins_down()
        await global_config_call(self.storage, "stop", self.worker_id)
        if every > 0:
            summary.flush()  # the rest of the last interval
        await self.executor.aclose()
        await self.registration.leave()
        if self.name_lease is not None:
            await self.name_lease.release()
        await self.broker.close()
        log.info("worker %s stopped", self.worker_id)

    async def start_up(self, stop: asyncio.Event) -> bool:
        """Start the broker (waiting out outages), then take the consumer name; False when ``stop`` came first."""
        lease = NameLease(self.broker, self.consumer, self.owner, self.broker.lease_seconds, self.queues)
        if await start_broker(self, stop) and await lease.acquire(stop):
            self.name_lease = lease
            await publish(self.app, self.broker, self.worker_id)  # producers that never imported the tasks
            return True
        log.info("worker %s stopped before it started serving", self.worker_id)
        try:
            await asyncio.wait_for(self.broker.close(), 5)
        except Exception as exc:  # noqa: BLE001 - closing is best effort at exit
            log.debug("closing the broker: %s", exc)
        return False

    async def _plugins_up(self) -> None:
        """Plugins' ``start``, then triggers ``broker_start`` and ``worker_start``: before any task runs."""
        plugins = self.plugins
        assert plugins is not None
        for p in plugins.all():
            try:
                await plugin_call(p.start, self)
            except ConfigError as exc:  # the plugin's one line says what to fix: no traceback
                log.error("plugin %r not started: %s", p, exc)
            except Exception:  # noqa: BLE001 - a plugin must not keep the worker from serving
                log.exception("plugin %r failed to start", p)
        await plugins.fire("broker_start", broker=self.broker, worker=self)
        await plugins.fire("worker_start", worker=self)

    async def _plugins_down(self) -> None:
        """Triggers ``worker_stop`` and ``broker_stop`` (results of the drain are stored), then ``stop``."""
        plugins = self.plugins
        assert plugins is not None
        await plugins.fire("worker_stop", worker=self)
        await plugins.fire("broker_stop", broker=self.broker, worker=self)
        for p in plugins.all():
            try:
                await plugin_call(p.stop, self)
            except Exception:  # noqa: BLE001
                log.exception("plugin %r failed to stop", p)

    async def drain(self, fetcher: asyncio.Task[None]) -> None:
        """Stop reading, let running tasks finish for a grace period, hand back the rest."""
        self.stopping = True
        self.slot_free.set()
        waiting = self.limiter.hand_back() if self.limiter is not None else []
        if self.backlog or waiting:  # prefetched, never started: back to the queue at once
            waiting += self.backlog
            self.backlog = deque()
            await self.release(waiting)
        grace = self.app.config.drain_seconds
        log.info("worker %s draining: %d tasks in flight, grace %.1fs", self.worker_id, len(self.inflight), grace)
        try:
            await asyncio.wait_for(fetcher, timeout=self.block_seconds + 5)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            fetcher.cancel()
        if self.inflight:
            self._settled_all.clear()
            try:
                await asyncio.wait_for(self._settled_all.wait(), timeout=grace)
            except asyncio.TimeoutError:
                pass
        unfinished = [d for d in self.inflight if d in self.executor.running]
        for d in unfinished:
            self.executor.running[d].cancel()
        if unfinished:
            log.warning("worker %s handing back %d unfinished tasks", self.worker_id, len(unfinished))
            await self.release(unfinished)
        # results of tasks that finished during the drain must be stored before exit
        for _ in range(50):
            if not self.inflight and not self._done:
                break
            self._done_event.set()
            await asyncio.sleep(0.1)


async def plugin_call(method: Callable[..., Any], worker: Worker) -> None:
    """A plugin's ``start``/``stop``: ours are ``async def`` and take ``worker=``; a QTasks plugin's may be plain
    (``def start(self)``: QTasks' sync starter calls it so), run in a thread so a blocking start cannot stall
    the loop, and without ``worker=`` when its signature has no place for it. What it returns is awaited when
    awaitable: QTasks' plugins end with ``return super().start(...)``, here our base's coroutine."""
    params = inspect.signature(method).parameters.values()
    kwargs = {"worker": worker} if any(p.name == "worker" or p.kind is p.VAR_KEYWORD for p in params) else {}
    if inspect.iscoroutinefunction(method):
        result = await method(**kwargs)
    else:
        result = await asyncio.to_thread(method, **kwargs)
    if inspect.isawaitable(result):
        await result
