"""``GET /metrics``: Prometheus metrics of the whole fleet, read from the query side at each scrape (not the
worker-local figures of :mod:`qtasks_fast.middlewares.metrics`): tasks per name and status, queue depth, in
flight, delayed and dead letters per queue, workers up and lost. Each scrape builds a fresh registry, so a
task name or queue that is gone stops being reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response

from qtasks_fast import service
from qtasks_fast.abc.query import TaskFilter


class _Snapshot:
    """A collector that hands out families gathered before the (sync) scrape."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self.families


async def gather(app: Any) -> list[GaugeMetricFamily]:
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
    return [tasks, *depth.values(), up, lost]


async def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(await gather(request.app.state.qtasks)))  # type: ignore[arg-type]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
