"""Prometheus metrics of the tasks a worker runs: counts by outcome and a duration histogram, per task name.

    from qtasks_fast.middlewares import Metrics
    app.add_middleware(Metrics, port=9100)      # each worker process serves http://127.0.0.1:9100/metrics

Metrics (``namespace`` ``qtasks`` by default), labels ``task`` and ``queue``:

- ``qtasks_tasks_total{status=success|error|cancel}``: tasks finished;
- ``qtasks_task_duration_seconds``: histogram of the time from start to outcome;
- ``qtasks_task_retries_total``: failed runs that were retried;
- ``qtasks_broker_memory_used_bytes`` and ``qtasks_broker_memory_max_bytes`` (0 = no limit): Redis
  ``used_memory`` and ``maxmemory``, read when ``/metrics`` is scraped and at most every
  ``memory_interval`` seconds (15 by default; never per task). At maxmemory (policy noeviction)
  Redis refuses new tasks and results: alert well before, e.g. on used / max > 0.9. Other
  brokers export no memory gauges.

Needs the ``metrics`` extra (``pip install 'qtasks-fast[metrics]'``, i.e. ``prometheus-client``).

Serving: with ``port`` the worker process starts ``prometheus_client.start_http_server`` on ``addr``
(``127.0.0.1`` unless you say otherwise: metrics name your tasks, keep them off public interfaces)
when it starts serving. Without ``port`` nothing listens: call :meth:`Metrics.serve` yourself, or
expose ``registry`` your own way.

Several worker processes (``--processes N`` > 1): each process has its own counters and only one
can bind the port. Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in the environment of
``qtasks-fast run`` (before Python starts, as prometheus_client reads it at import): every process
then writes its values there, and the one that binds the port serves the sum of all of them.
Empty the directory before each start of the fleet.

Cost: one hook per task (``after_execute``: a dict lookup, a counter and a histogram update); tasks
take the worker's hooked path, as with any middleware.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qtasks_fast.faults import Outage
from qtasks_fast.log import get_logger
from qtasks_fast.middleware import Middleware
from qtasks_fast.plugins import BasePlugin

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.worker.context import ExecContext

log = get_logger("metrics")

#: duration buckets (seconds): from sub-millisecond tasks to ten-minute ones
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           120.0, 300.0, 600.0)
#: collectors per (registry, namespace): a second Metrics (another app in the process, a test) reuses them,
#: as prometheus_client refuses to register one name twice
_collectors: dict[tuple[int, str], tuple[Any, Any, Any]] = {}
#: the broker memory collector registered per (registry, namespace), for the same reason
_memory: dict[tuple[int, str], BrokerMemory] = {}
#: ports this process serves already
_served: set[tuple[str, int]] = set()
_lock = threading.Lock()


def prometheus() -> Any:
    """The ``prometheus_client`` module, or an ImportError that says how to install it."""
    try:
        import prometheus_client
    except ImportError as exc:
        raise ImportError("qtasks_fast.middlewares.Metrics needs prometheus-client: "
                          "pip install 'qtasks-fast[metrics]' (or pip install prometheus-client)") from exc
    return prometheus_client


class Metrics(Middleware):
    """Task counts by outcome, durations and retries, per task name and queue, as Prometheus metrics."""

    def __init__(self, port: int | None = None, addr: str = "127.0.0.1", namespace: str = "qtasks",
                 registry: Any = None, buckets: Sequence[float] = BUCKETS, memory_interval: float = 15.0) -> None:
        prom = prometheus()
        self.port = port
        self.addr = addr
        self.namespace = namespace
        self.memory_interval = memory_interval
        #: the broker memory gauges, once :meth:`attach` knows the app
        self.memory: BrokerMemory | None = None
        self.registry = registry if registry is not None else prom.REGISTRY
        with _lock:
            key = (id(self.registry), namespace)
            if key not in _collectors:
                labels = ["task", "queue"]
                _collectors[key] = (
                    prom.Counter(f"{namespace}_tasks", "Tasks finished, by outcome", [*labels, "status"],
                                 registry=self.registry),
                    prom.Histogram(f"{namespace}_task_duration_seconds", "Time from a task's start to its outcome",
                                   labels, buckets=tuple(buckets), registry=self.registry),
                    prom.Counter(f"{namespace}_task_retries", "Failed runs that were retried", labels,
                                 registry=self.registry),
                )
        self.tasks, self.duration, self.retries = _collectors[key]
        #: labelled children by (task, queue, status): ``labels()`` costs a lock and a tuple per call
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def after_execute(self, ctx: ExecContext, status: str, result: Any) -> None:
        key = (ctx.task_name, ctx.envelope.queue, status)
        pair = self._children.get(key)
        if pair is None:
            pair = self._children[key] = (self.tasks.labels(key[0], key[1], status),
                                          self.duration.labels(key[0], key[1]))
        pair[0].inc()
        pair[1].observe(time.monotonic() - ctx.started)

    def on_retry(self, ctx: ExecContext, child: Envelope) -> None:
        self.retries.labels(ctx.task_name, ctx.envelope.queue).inc()

    # ---------------------------------------------------------------- serving
    def attach(self, app: Any) -> None:
        """``app.add_middleware`` calls this: with ``port``, each worker process serves when it starts."""
        with _lock:
            key = (id(self.registry), self.namespace)
            if key not in _memory:
                _memory[key] = BrokerMemory(app, self.namespace, self.memory_interval)
                self.registry.register(_memory[key])
            self.memory = _memory[key]
        if self.port is not None:
            app.add_plugin(_Serve(self), trigger_names=["worker_start"], component="worker")

    def serve(self, port: int | None = None, addr: str | None = None) -> bool:
        """Serve ``/metrics`` on ``addr:port`` from this process; False when another process has the port."""
        prom = prometheus()
        port = self.port if port is None else port
        addr = addr or self.addr
        if port is None:
            raise ValueError("Metrics.serve: no port (pass port= here or to Metrics)")
        with _lock:
            if (addr, port) in _served:
                return True
            registry = self.registry
            multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            if multiproc:  # serve the sum of every process' files, not this process' values alone
                from prometheus_client import multiprocess

                registry = prom.CollectorRegistry()
                multiprocess.MultiProcessCollector(registry)
                if self.memory is not None:  # one Redis for every process: the serving one reads it
                    registry.register(self.memory)
            try:
                prom.start_http_server(port, addr=addr, registry=registry)
            except OSError as exc:
                if multiproc:
                    log.info("metrics port %s:%d is served by another worker process (%s)", addr, port, exc)
                else:
                    log.warning("cannot serve metrics on %s:%d (%s): another process has it. With --processes > 1 "
                                "set PROMETHEUS_MULTIPROC_DIR so that one process serves them all", addr, port, exc)
                return False
            _served.add((addr, port))
        log.info("serving metrics on http://%s:%d/metrics%s", addr, port, " (multiprocess)" if multiproc else "")
        return True


class BrokerMemory:
    """A Prometheus collector of the broker's memory (Redis ``INFO memory``), read at scrape time.

    The value is cached for ``interval`` seconds, so Redis is asked at most that often whatever
    the scrape rate, and not at all when nobody scrapes. Nothing is exported while the broker
    cannot be asked (a stale value would hide an outage).
    """

    def __init__(self, app: Any, namespace: str, interval: float) -> None:
        self.app, self.namespace, self.interval = app, namespace, interval
        self._next = 0.0
        self._last: dict[str, Any] | None = None
        self._outage = Outage(log, "broker memory metrics unavailable (not exported meanwhile)", cap=interval)

    def _families(self, used: float | None, limit: float | None) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        return [GaugeMetricFamily(f"{self.namespace}_broker_memory_used_bytes", "Memory used by the broker (Redis "
                                  "used_memory)", value=used),
                GaugeMetricFamily(f"{self.namespace}_broker_memory_max_bytes", "The broker's memory limit (Redis "
                                  "maxmemory; 0 = none): at it, new tasks and results are refused", value=limit)]

    def describe(self) -> list[Any]:
        return self._families(None, None)

    def collect(self) -> list[Any]:
        from qtasks_fast.abc.capabilities import BrokerMemory

        broker = self.app.broker  # looked up here: attach() must not open a broker
        if not isinstance(broker, BrokerMemory):
            return []
        stats = broker.memory_stats
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            try:
                self._last = stats()
                self._outage.ok()
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the broker is away
                self._outage.failed(exc)  # one line when it starts, one when it ends
                self._last = None
        if self._last is None:
            return []
        return self._families(self._last["used_memory"], self._last["maxmemory"])


class _Serve(BasePlugin):
    """Starts the metrics server of a :class:`Metrics` when a worker process starts serving."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__("metrics-server")
        self.metrics = metrics

    def trigger(self, name: str, **kwargs: Any) -> None:
        self.metrics.serve()
