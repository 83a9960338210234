"""The fetcher: asks the broker for as many messages as there are free slots, then dispatches them.

One round trip per batch; batch size follows free capacity so a busy worker
never hoards messages that an idle one could run. Messages that cannot run
(malformed, oversized, unknown task) are dead-lettered right here and never
reach the executor.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import redis

from qtasks_fast import _corelib as core
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Delivery
    from qtasks_fast.worker.worker import Worker

log = get_logger("worker")
#: errors after which the fetcher backs off and tries again instead of dying
TRANSIENT = (ConnectionError, OSError, TimeoutError, redis.ConnectionError, redis.TimeoutError,
             redis.BusyLoadingError, BrokerUnavailable)


async def fetch_loop(w: Worker) -> None:
    broker, storage = w.broker, w.storage
    handlers = w.app.tasks
    max_size = w.app.config.max_payload
    batch_size = w.app.config.batch_size
    marks = broker.marks_started(storage)
    backoff = 0.1
    while not w.stopping:
        free = w.concurrency - len(w.inflight)
        if free <= 0:
            w.slot_free.clear()
            await w.slot_free.wait()
            continue
        try:
            batch = await broker.fetch(min(free, batch_size), w.block_seconds)
        except TRANSIENT as exc:
            log.warning("broker unreachable while fetching (%s); retrying in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        if backoff > 0.1:
            log.info("broker reachable again")
            backoff = 0.1
        if not batch:
            continue
        ready: list[Delivery] = []
        bad: list[tuple[Delivery, str]] = []
        for queue, flat in batch:
            core.decode_batch(queue, flat, handlers, max_size, ready, bad)
        if bad:
            await w.dead_letter(bad)
        if not ready:
            continue
        if not marks:
            await storage.mark_started(ready, w.worker_id)
        if w.stopping:  # fetched while a stop was requested: hand back unrun
            await w.release(ready)
            return
        w.inflight.update(ready)
        submit = w.executor.submit
        for d in ready:
            submit(d)
