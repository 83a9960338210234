"""The lease keeper: proves this worker is alive by renewing the lease of every running delivery.

Without it a long task would look abandoned after ``lease_seconds`` and another
worker would run it a second time. Renewal runs every third of the lease, so
two missed beats are tolerated. The fleet-wide concurrency slots of running
limited tasks expire after a lease the same way, so they are renewed here too.
It also trims the dashboard indexes now and then.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from qtasks_fast.log import get_logger
from qtasks_fast.worker.ownership import renew_held

if TYPE_CHECKING:
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
TRIM_EVERY = 60.0


async def lease_loop(w: Worker) -> None:
    interval = max(w.broker.lease_seconds / 3, 0.05)
    next_trim = time.monotonic() + TRIM_EVERY
    w.leases_until = time.monotonic() + w.broker.lease_seconds  # nothing held yet
    while True:
        await asyncio.sleep(interval)
        try:
            await renew_held(w)  # and drops what another worker took over (see ownership.py)
            if w.limiter is not None and w.limiter.held:
                await w.limiter.renew()
            if time.monotonic() >= next_trim and hasattr(w.broker, "trim_indexes"):
                next_trim = time.monotonic() + TRIM_EVERY
                await w.broker.trim_indexes()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a missed beat is survivable; the next one retries
            log.warning("lease renewal failed for %d deliveries: %s", len(w.inflight), exc)
