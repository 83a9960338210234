"""SAQ peer: Redis queue, ``saq settings --workers 2`` (default concurrency 10)."""

from __future__ import annotations

import json
from typing import Any

from saq import Queue

from ._base import PeerBench, gather_chunked, redis_url, script

DB = 12
URL = redis_url(DB)

queue = Queue.from_url(URL)


async def noop(ctx: dict[str, Any]) -> int:
    return 1


async def echo(ctx: dict[str, Any], *, x: int) -> int:
    return x


settings: dict[str, Any] = {"queue": queue, "functions": [noop, echo], "concurrency": 10}


class Bench(PeerBench):
    name = "saq"
    dist = "saq"
    db = DB
    worker_desc = "saq --workers 2 (concurrency 10)"

    def worker_commands(self) -> list[list[str]]:
        return [[script("saq"), f"{__name__}.settings", "--workers", "2"]]

    async def open(self) -> None:
        await queue.connect()

    async def close(self) -> None:
        await queue.disconnect()

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        job = await (queue.enqueue("echo", x=arg) if task == "echo" else queue.enqueue("noop"))
        assert job is not None
        return job.id

    async def enqueue_many(self, n: int) -> list[Any]:
        # what saq's own Queue.map does: concurrent enqueues (bounded here)
        jobs = await gather_chunked([queue.enqueue("noop") for _ in range(n)], self.chunk)
        return [j.id for j in jobs]

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.get(handle)

    def is_done(self, reply: Any) -> bool:
        # terminal states; under load saq's sweeper sometimes marks a job that ran "aborted" ("swept")
        return bool(reply) and json.loads(reply).get("status") in ("complete", "failed", "aborted")

    def is_ok(self, reply: Any) -> bool:
        return bool(reply) and json.loads(reply).get("status") == "complete"
