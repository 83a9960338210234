"""A worker's entry in the app's worker registry: what ``qtasks-fast inspect`` lists as live workers.

The worker registers when it starts serving, and its lease keeper beats every third of
``lease_seconds`` (never per task: the registry costs one small write per beat, whatever
the throughput); a graceful stop removes the entry, a SIGKILLed worker ages out after a
lease (see the fleet-visibility section of :mod:`qtasks_fast.abc.broker`).

Each beat also carries the process's numbers: tasks done/failed (counters the worker adds per settled
batch, never a write per task), CPU (percent of one core since the previous beat) and resident memory,
measured with psutil at the beat (a platform where psutil cannot read them leaves zeros).

Visibility must never cost the work: a broker without a registry (``NotSupported``)
turns it off for good with one debug line, and a failed beat (an outage) is retried at
the next one: the lease keeper, whose renewals matter, logs the outage itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtasks_fast.abc.capabilities import NotSupported, WorkerInfo, WorkerRegistry, require
from qtasks_fast.faults import describe
from qtasks_fast.log import get_logger

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Broker

log = get_logger("worker")


class Registration:
    """Registers one worker process and keeps its heartbeat going."""

    def __init__(self, broker: Broker, worker_id: str, queues: list[str], concurrency: int, processes: int,
                 counts: Callable[[], tuple[int, int]] | None = None) -> None:
        self.broker = broker
        self.info = WorkerInfo(id=worker_id, host=socket.gethostname(), pid=os.getpid(), processes=processes,
                               queues=queues, concurrency=concurrency, started=time.time(), heartbeat=time.time())
        self.enabled = True
        self.joined = False
        #: ``(done, failed)`` so far, read at each beat (the worker's own counters)
        self.counts = counts
        self._proc: Any = None  # psutil.Process of this pid, made at the first beat (after any fork)

    def measure(self) -> None:
        """Fill the entry's numbers: the worker's counters, CPU since the previous beat, RSS now."""
        if self.counts is not None:
            self.info.done, self.info.failed = self.counts()
        import psutil

        try:
            if self._proc is None or self._proc.pid != os.getpid():
                self._proc = psutil.Process()
                self._proc.cpu_percent(None)  # the first call starts the interval (and returns 0.0)
            self.info.cpu_percent = float(self._proc.cpu_percent(None))
            self.info.rss = int(self._proc.memory_info().rss)
        except (psutil.Error, OSError):  # a sandbox that hides /proc: the entry keeps zeros
            pass

    async def beat(self, timeout: float) -> None:
        """Register or refresh the entry, waiting at most ``timeout`` seconds (a hung broker must not delay
        the lease renewals that follow)."""
        if not self.enabled:
            return
        self.info.heartbeat = time.time()
        self.measure()
        try:
            await asyncio.wait_for(require(self.broker, WorkerRegistry).register_worker(self.info), timeout)
            self.joined = True
        except NotSupported:
            self.enabled = False
            log.debug("broker %s has no worker registry: worker %s is not listed by inspect",
                      type(self.broker).__name__, self.info.id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - visibility only: the next beat tries again
            log.debug("worker %s: heartbeat not recorded (%s); the next beat retries", self.info.id, describe(exc))

    async def leave(self) -> None:
        """Remove the entry at a graceful stop (best effort: otherwise it ages out after a lease)."""
        if not (self.enabled and self.joined):
            return
        try:
            await asyncio.wait_for(require(self.broker, WorkerRegistry).unregister_worker(self.info), 5)
        except Exception as exc:  # noqa: BLE001
            log.debug("worker %s: could not leave the registry (%s); its entry ages out within %.0fs",
                      self.info.id, describe(exc), self.broker.lease_seconds)
