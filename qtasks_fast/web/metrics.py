"""``GET /metrics``: Prometheus metrics of the whole fleet, read from the query side at each scrape (not the
worker-local figures of :mod:`qtasks_fast.middlewares.metrics`): tasks per name and status, queue depth, in
flight, delayed and dead letters per queue, workers up and lost, and the run time of recently finished tasks by
name (:func:`runtimes`). Each scrape builds a fresh registry, so a task name or queue that is gone stops being
reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import Response

from qtasks_fast import service
from qtasks_fast.abc.query import TaskFilter

#: upper bounds (seconds) of the run-time buckets
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: how many of the newest records per finished status the run-time histogram reads at each scrape
SAMPLE = 1000


class _Snapshot:
    """A collector that hands out families gathered before the (sync) scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


async def gather(app: Any) -> list[Metric]:
    tasks = GaugeMetricFamily("qtasks_tasks", "Task records kept, by task name and status", labels=["task_name",
                                                                                                    "status"])
    for name in service.registered_names(app):
        for status, n in (await service.count_tasks(app, TaskFilter(task_name=name))).items():
            tasks.add_metric([name, status], n)
    depth = {k: GaugeMetricFamily(f"qtasks_queue_{k}", f"Messages {what}, by queue", labels=["queue"])
             for k, what in (("waiting", "ready to run"), ("in_flight", "handed to a worker, not settled"),
                             ("delayed", "held until their eta"), ("dead", "in the dead-letter store"))}
    for q in await service.queues(app):
        d = q.depth
        depth["waiting"].add_metric([d.queue], sum(d.waiting_by_priority.values()))
        depth["in_flight"].add_metric([d.queue], sum(d.in_flight_by_worker.values()))
        depth["delayed"].add_metric([d.queue], d.delayed)
        depth["dead"].add_metric([d.queue], d.dead)
    listed = await service.workers(app, include_lost=True)
    up = GaugeMetricFamily("qtasks_workers_up", "Worker processes with a fresh heartbeat")
    up.add_metric([], sum(not w.lost for w in listed))
    lost = GaugeMetricFamily("qtasks_workers_lost", "Worker processes whose heartbeat stopped within the hour")
    lost.add_metric([], sum(w.lost for w in listed))
    return [tasks, *depth.values(), up, lost, await runtimes(app)]


async def runtimes(app: Any) -> GaugeHistogramMetricFamily:
    """Run time (finished - started) of the newest :data:`SAMPLE` ``success`` and ``error`` records, by task
    name. Why records and a gauge histogram: they hold both times on every backend and the status filter is
    indexed, so a scrape costs two page reads and sees the whole fleet; it is a sample of recent runs, read anew
    at each scrape (a gauge histogram), not a counter of every run since a start (a web server sees no run)."""
    seconds: dict[str, list[float]] = {}
    for status in ("success", "error"):
        page = await service.list_tasks(app, TaskFilter(status=status), SAMPLE)
        for t in page.tasks:
            if t.started_at is not None and t.finished_at is not None:
                seconds.setdefault(t.task_name, []).append(max(0.0, t.finished_at - t.started_at))
    family = GaugeHistogramMetricFamily(
        "qtasks_task_runtime_seconds", f"Run time (finished - started) of the newest {SAMPLE} success and {SAMPLE} "
        "error task records, by task name: read from the records at each scrape, a sample of recent runs",
        labels=["task_name"])
    for name, runs in sorted(seconds.items()):
        buckets = [(f"{le:g}", float(sum(r <= le for r in runs))) for le in BUCKETS]
        family.add_metric([name], [*buckets, ("+Inf", float(len(runs)))], sum(runs))
    return family


async def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await gather(request.app.state.qtasks)))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
