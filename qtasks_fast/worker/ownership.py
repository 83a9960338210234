"""Lost leases: what a worker does when the broker says another consumer now holds its deliveries.

A worker frozen (SIGSTOP, a paused VM, a long GC) or cut off from the broker for
longer than the lease comes back to find its messages handed to another worker.
:meth:`Broker.renew` answers with the deliveries this consumer still holds; the
others are dropped here, never run or settled by this worker:

- a prefetched one (backlog, or waiting for a fleet-wide slot) is never started;
- a running one runs on (stopping it half-way could do more harm than finishing it),
  but its outcome is not stored and it is not acked: the new owner's outcome counts;
- a finished one waiting for the settler is not settled, for the same reason.

``Worker.leases_until`` is the monotonic time until which every lease this worker
holds is known to be valid (renewal time + lease). The lease keeper refreshes it
every third of the lease, so in normal operation it is always in the future and
the hot path pays one float comparison per start and per settled batch. Once it
has passed (the worker was frozen or cut off), starting from the backlog waits for
a renewal first (:func:`reconfirm`), and so does the next settle (:func:`owned`).

Remaining race, documented: a settle already on its way when the lease is lost
still acks the message (Redis XACK, a SQLite DELETE are per group, not per
consumer); the record then holds this worker's outcome, and the new owner's renew
reports the message lost, so it does not store a second one.
"""

from __future__ import annotations

import asyncio
import time
import uuid as _uuid
from collections import deque
from typing import TYPE_CHECKING

from qtasks_fast.faults import Outage, transient
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.worker.followups import CHAIN_NAMESPACE

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery, Outcome
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
#: lost deliveries logged one line each; beyond this, one line with the count
LOG_EACH = 20


async def renew_held(w: Worker) -> None:
    """Renew every delivery ``w`` holds, drop the ones the broker says are lost, move ``leases_until``."""
    t0 = time.monotonic()
    held = list(w.inflight)
    if held:
        still = await w.broker.renew(held)
        if still is not None and len(still) < len(held):
            forget(w, set(held).difference(still))
    w.leases_until = t0 + w.broker.lease_seconds


def forget(w: Worker, lost: set[Delivery]) -> None:
    """Drop deliveries another consumer now holds: unstarted ones at once, the outcome of the others later."""
    lost = lost.intersection(w.inflight)  # a concurrent renewal may have dropped some already
    if not lost:
        return
    pending = {o[0] for o in w._done}
    pending.update(o[0] for o in w._settling)
    unstarted = [d for d in w.backlog if d in lost]
    if unstarted:
        w.backlog = deque(d for d in w.backlog if d not in lost)
    if w.limiter is not None and w.limiter.waiting:
        waiting = [d for d in w.limiter.waiting if d in lost]
        for d in waiting:
            w.limiter.waiting.remove(d)
        unstarted += waiting
    running = [d for d in lost if d in w.executor.running]
    finished = [d for d in lost if d in pending and d not in w.executor.running]
    # never started and nowhere above: a last attempt the fetcher holds back to run alone (see fetcher.py);
    # ``dispatch`` skips it. Anything else is being settled right now: left alone
    known = {*unstarted, *running, *finished}
    held_back = [d for d in lost if not d.started and d not in known]
    unstarted += held_back
    w.lost.update(running)
    w.lost.update(finished)
    w.lost.update(held_back)
    lines = [(d, "not starting it") for d in unstarted]
    lines += [(d, "it runs on here, but its outcome is left to the new owner") for d in running]
    lines += [(d, "its outcome is left to the new owner") for d in finished]
    for d, _ in lines:
        w.inflight.discard(d)
    for d, what in lines[:LOG_EACH]:
        env = d.envelope
        log.warning("worker %s lost the lease of task %s to another worker (this one missed its renewals: "
                    "frozen or cut off from the broker); %s", w.worker_id,
                    task_label(env.task_name, env.uuid) if env is not None else f"message {d.msg_id!r}", what)
    if len(lines) > LOG_EACH:
        log.warning("worker %s lost the leases of %d more tasks to another worker (not started, outcomes "
                    "left to the new owner)", w.worker_id, len(lines) - LOG_EACH)
    if lines:
        if not w.inflight:
            w._settled_all.set()
        w.slot_free.set()


def reconfirm(w: Worker) -> None:
    """``start_more`` found the leases unconfirmed: renew first (once at a time), then start again."""
    if w._confirming is None:
        w._confirming = asyncio.get_running_loop().create_task(_confirm(w, start=True), name="lease check")


async def confirm(w: Worker) -> None:
    """Wait until a renewal has confirmed (or dropped) every delivery ``w`` holds."""
    task = w._confirming
    if task is None:
        task = w._confirming = asyncio.get_running_loop().create_task(_confirm(w), name="lease check")
    await asyncio.shield(task)


async def _confirm(w: Worker, start: bool = False) -> None:
    outage = Outage(log, f"worker {w.worker_id} cannot confirm its leases (prefetched tasks wait)", cap=2.0)
    try:
        while True:
            try:
                await renew_held(w)
                outage.ok()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                if not transient(exc):  # not an outage: carry on as before leases were checked
                    log.warning("worker %s: lease check failed (%s); assuming its leases are held", w.worker_id,
                                exc)
                    w.leases_until = time.monotonic() + w.broker.lease_seconds
                    break
                await outage.wait(exc)
    finally:
        w._confirming = None
    w.start_more(confirmed=True)


async def owned(w: Worker, outcomes: list[Outcome],
                retries: list[Envelope]) -> tuple[list[Outcome], list[Envelope]]:
    """The outcomes (and retry/chain children) of a batch that this worker may still settle.

    Renews first when the leases are unconfirmed; drops the outcomes of lost deliveries.
    """
    if time.monotonic() >= w.leases_until:
        w._settling = outcomes
        try:
            await confirm(w)
        finally:
            w._settling = ()
    if not w.lost:
        return outcomes, retries
    keep: list[Outcome] = []
    children: set[str] = set()
    for o in outcomes:
        d = o[0]
        if d in w.lost:
            w.lost.discard(d)
            w.unsettled -= 1
            if o[4]:
                children.add(o[4])
            if d.envelope is not None:
                children.add(str(_uuid.uuid5(CHAIN_NAMESPACE, d.envelope.uuid)))
        else:
            keep.append(o)
    if len(keep) < len(outcomes):
        retries = [e for e in retries if e.uuid not in children]
        w.slot_free.set()
        if not w.inflight:
            w._settled_all.set()
    return keep, retries
