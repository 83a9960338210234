"""``GlobalConfig``: every knob of an app in one place, with the reason for each default."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

#: fields that hold objects, not settings: never read from the environment
_NOT_FROM_ENV = frozenset({"task_manager"})


@dataclasses.dataclass
class GlobalConfig:
    """App-wide settings (QTasks ``app.config``). Environment variables ``QTASKS_<NAME>`` override defaults."""

    #: queue used by tasks that do not name one
    default_queue: str = "default"
    #: seconds a finished record (and its result) is kept
    result_ttl: float = 86400.0
    #: largest encoded envelope accepted, in bytes; bigger ones are refused at enqueue and dead-lettered in the worker
    max_payload: int = 1024 * 1024
    #: a delivery whose worker stops renewing it for this long is taken over by another worker
    lease_seconds: float = 30.0
    #: deliveries after which a message is dead-lettered instead of run again (stops crash loops)
    max_deliveries: int = 5
    #: priority levels (0 = most urgent); each is one stream per queue
    priority_levels: int = 10
    #: keep the status/name indexes a dashboard lists from (costs two ZADDs per task)
    index_results: bool = True
    #: tasks run at once per worker process. 64, within the connection pools task code shares: redis-py's
    #: ``redis.asyncio`` client allows 100 connections and raises ``MaxConnectionsError`` past them, so one
    #: client shared by every task breaks under a burst once more than 100 run. Short tasks drain as fast
    #: as at 256 (measured, benchmarks/RESULTS.md): the fetch, not the number running, sets that pace
    concurrency: int = 64
    #: threads for sync tasks per worker process
    threads: int = 16
    #: most messages fetched in one round trip
    batch_size: int = 500
    #: messages a worker process holds beyond ``concurrency``, ready to start the moment a slot frees
    #: (-1 = as many as ``concurrency``); 0 for long tasks, so an idle worker is never left without work
    prefetch: int = -1
    #: seconds a graceful stop waits for running tasks before handing the rest back
    drain_seconds: float = 30.0
    #: validate arguments against type hints (producer side when the task is known, always in the worker)
    validate_args: bool = True
    #: seconds ``add_task(unique="key")`` holds the key when no ttl is given (``unique=("key", ttl)``)
    unique_ttl: float = 3600.0
    #: seconds a Redis command may take to answer before it fails with ``BrokerUnavailable`` (0 = no limit):
    #: without it a hung Redis (stopped, partitioned without a reset) blocks ``add_task`` forever. Blocking
    #: waits (``add_task(timeout=N)``, the worker's read) are cut into slices of half this on the server, so
    #: they are never cut by it. A URL query ``?socket_timeout=`` wins
    socket_timeout: float = 10.0
    #: seconds to open a connection to Redis before it fails with ``BrokerUnavailable`` (0 = no limit); a URL
    #: query ``?socket_connect_timeout=`` wins
    connect_timeout: float = 5.0
    #: seconds between a worker process's summary lines at INFO (tasks/s, ok, failed, retried, cancelled;
    #: none for an idle interval); successes have no line of their own, failures do. 0 = no summary
    log_summary_seconds: float = 60.0
    #: a ``qtasks_fast.components.task_manager.TaskManager``: sees (and may change) every task before it
    #: is sent, on the producer only; None costs nothing
    task_manager: Any = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in _NOT_FROM_ENV:
                continue
            raw = os.environ.get("QTASKS_" + f.name.upper())
            if raw is None:
                continue
            kind = type(getattr(self, f.name))
            try:
                value: object = raw.lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
            except ValueError:
                raise ValueError(f"QTASKS_{f.name.upper()}={raw!r} is not a valid {kind.__name__}: fix or unset "
                                 "it") from None
            setattr(self, f.name, value)
        if self.priority_levels < 1:
            raise ValueError("priority_levels must be at least 1")
        for name in ("socket_timeout", "connect_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or a positive number of seconds")


def effective_prefetch(concurrency: int, prefetch: int) -> int:
    """How many messages a worker holds beyond ``concurrency``: ``prefetch`` capped at ``concurrency``, and
    ``concurrency`` itself for ``-1`` (it follows concurrency). The worker and ``inspect`` both use this."""
    return concurrency if prefetch < 0 else min(concurrency, prefetch)
