"""RQ peer: ``rq worker-pool -n 2`` (default forking Worker), results in ``rq:results:<id>``."""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue

from ._base import PeerBench, redis_url, script

DB = 11
URL = redis_url(DB)
#: RQ keeps results 500 s by default; a slow drain outlasts that, so keep them for an hour
RESULT_TTL = 3600


def noop() -> int:
    return 1


def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "rq"
    dist = "rq"
    db = DB
    worker_desc = "rq worker-pool -n 2 (forking Worker)"
    chunk = 1000

    def __init__(self) -> None:
        super().__init__()
        self.queue: Queue | None = None

    def worker_commands(self) -> list[list[str]]:
        return [[script("rq"), "worker-pool", "-n", "2", "-u", self.url, "-l", "WARNING", "default"]]

    async def open(self) -> None:
        self.queue = Queue("default", connection=Redis.from_url(self.url))

    async def close(self) -> None:
        if self.queue is not None:
            self.queue.connection.close()
            self.queue = None

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        assert self.queue is not None
        if task == "echo":
            job = self.queue.enqueue(echo, arg, result_ttl=RESULT_TTL)
        else:
            job = self.queue.enqueue(noop, result_ttl=RESULT_TTL)
        return job.id

    async def enqueue_many(self, n: int) -> list[Any]:
        assert self.queue is not None
        ids: list[Any] = []
        for i in range(0, n, self.chunk):
            jobs = self.queue.enqueue_many(
                [Queue.prepare_data(noop, result_ttl=RESULT_TTL) for _ in range(min(self.chunk, n - i))]
            )
            ids.extend(j.id for j in jobs)
        return ids

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(f"rq:results:{handle}")
