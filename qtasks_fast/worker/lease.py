"""The lease keeper: proves this worker is alive by renewing the lease of every running delivery.

Without it a long task would look abandoned after ``lease_seconds`` and another
worker would run it a second time. Renewal runs every third of the lease, so
two missed beats are tolerated. The fleet-wide concurrency slots of running
limited tasks expire after a lease the same way, so they are renewed here too.
It also trims the dashboard indexes now and then, and beats the worker's entry in the
worker registry (``inspect``'s live workers, see ``registry.py``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from qtasks_fast.faults import Outage, describe, transient
from qtasks_fast.log import get_logger
from qtasks_fast.worker.ownership import renew_held
from qtasks_fast.worker.startup import ConsumerNameLost

if TYPE_CHECKING:
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
TRIM_EVERY = 60.0


async def lease_loop(w: Worker) -> None:
    """Renew every third of the lease, at a fixed rate: the time a renewal itself takes (a loop slowed by a
    CPU-bound task's thread holding the GIL makes each statement slow) does not push the next one later.
    The registry heartbeat and index trimming run beside it (:func:`housekeeping`), so however slow they
    are, they never delay a renewal."""
    interval = max(w.broker.lease_seconds / 3, 0.05)
    # renewal goes on at its own pace through an outage (Redis still accepts it at maxmemory: XCLAIM
    # JUSTID adds no data); a failing one is logged when the outage starts and when it ends
    outage = Outage(log, f"worker {w.worker_id}: lease renewal failing (the next beat retries)", cap=interval)
    w.leases_until = time.monotonic() + w.broker.lease_seconds  # nothing held yet
    keeper = asyncio.create_task(housekeeping(w, interval), name="registry heartbeat")
    due = time.monotonic()
    try:
        while True:
            due = max(due + interval, time.monotonic())  # behind after a stall: renew now, then on the beat
            await asyncio.sleep(due - time.monotonic())
            try:
                if w.name_lease is not None:
                    await w.name_lease.renew()  # ConsumerNameLost ends the worker: its tasks belong to another
                await renew_held(w)  # and drops what another worker took over (see ownership.py)
                if w.limiter is not None and w.limiter.held:
                    await w.limiter.renew()
                if outage.down:
                    outage.ok()
            except (asyncio.CancelledError, ConsumerNameLost):
                raise
            except Exception as exc:  # noqa: BLE001 - a missed beat is survivable; the next one retries
                if transient(exc):
                    outage.failed(exc)
                else:
                    log.warning("worker %s: lease renewal failed for %d deliveries: %s", w.worker_id,
                                len(w.inflight), describe(exc))
    finally:
        keeper.cancel()


async def housekeeping(w: Worker, interval: float) -> None:
    """The worker registry's heartbeat every ``interval`` and index trimming about once a minute: work for
    visibility, kept off the renewals' schedule (see :func:`lease_loop`). Neither ever raises."""
    next_trim = time.monotonic() + TRIM_EVERY
    while True:
        await asyncio.sleep(interval)
        await w.registration.beat(interval / 2)
        if time.monotonic() >= next_trim:
            next_trim = time.monotonic() + TRIM_EVERY
            try:
                await w.broker.trim_indexes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - housekeeping: the next round retries
                log.warning("worker %s: trimming the task indexes failed (the next round retries): %s",
                            w.worker_id, describe(exc))
