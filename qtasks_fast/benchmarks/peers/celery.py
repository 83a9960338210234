"""Celery peer: Redis broker + Redis result backend, prefork pool with 2 processes."""

from __future__ import annotations

from typing import Any

from celery import Celery

from ._base import PeerBench, redis_url, script

DB = 7
URL = redis_url(DB)

app = Celery("peers_celery", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=True,
)


@app.task(name="noop")
def noop() -> int:
    return 1


@app.task(name="echo")
def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "celery"
    dist = "celery"
    db = DB
    worker_desc = "celery worker -c 2 --pool prefork"

    def worker_commands(self) -> list[list[str]]:
        return [[script("celery"), "-A", __name__, "worker", "-c", "2", "--pool", "prefork", "-l", "WARNING"]]

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        if task == "echo":
            return echo.apply_async((arg,)).id
        return noop.apply_async().id

    async def enqueue_many(self, n: int) -> list[Any]:
        # one pooled producer connection for the whole batch (celery has no bulk publish)
        with app.producer_or_acquire() as producer:
            return [noop.apply_async(producer=producer).id for _ in range(n)]

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(f"celery-task-meta-{handle}")
