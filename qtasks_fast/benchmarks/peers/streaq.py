"""streaQ peer: Redis streams worker, ``streaq run --workers 2`` (default concurrency 16)."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from streaq import Worker

from ._base import PeerBench, redis_url, script

DB = 13
URL = redis_url(DB)


@asynccontextmanager
async def quiet_lifespan() -> AsyncGenerator[None, None]:
    # streaq logs every task at INFO; all peers run their workers at WARNING
    logging.getLogger("streaq").setLevel(logging.WARNING)
    yield None


worker: Worker[Any] = Worker(redis_url=URL, lifespan=quiet_lifespan)


# results are kept 5 minutes by default; keep them for an hour so a slow drain can be verified
@worker.task(ttl=3600)
async def noop() -> int:
    return 1


@worker.task(ttl=3600)
async def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "streaq"
    dist = "streaq"
    db = DB
    worker_desc = "streaq run --workers 2 (concurrency 16)"
    chunk = 1000

    def __init__(self) -> None:
        super().__init__()
        self.stack: AsyncExitStack | None = None

    def worker_commands(self) -> list[list[str]]:
        return [[script("streaq"), "run", f"{__name__}:worker", "--workers", "2"]]

    async def open(self) -> None:
        self.stack = AsyncExitStack()
        await self.stack.enter_async_context(worker)

    async def close(self) -> None:
        if self.stack is not None:
            await self.stack.aclose()
            self.stack = None

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        t = await (echo.enqueue(arg) if task == "echo" else noop.enqueue())
        return t.id

    async def enqueue_many(self, n: int) -> list[Any]:
        ids: list[Any] = []
        for i in range(0, n, self.chunk):
            tasks = [noop.enqueue() for _ in range(min(self.chunk, n - i))]
            await worker.enqueue_many(tasks)
            ids.extend(t.id for t in tasks)
        return ids

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(f"{worker.results_key}{handle}")
