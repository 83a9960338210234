"""taskiq peer: taskiq-redis RedisStreamBroker + RedisAsyncResultBackend, ``taskiq worker --workers 2``."""

from __future__ import annotations

from typing import Any

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from ._base import PeerBench, gather_chunked, redis_url, script

DB = 10
URL = redis_url(DB)

broker = RedisStreamBroker(url=URL).with_result_backend(RedisAsyncResultBackend(redis_url=URL))


@broker.task(task_name="noop")
async def noop() -> int:
    return 1


@broker.task(task_name="echo")
async def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "taskiq"
    dist = "taskiq"
    db = DB
    worker_desc = "taskiq worker --workers 2 (RedisStreamBroker)"

    def version(self) -> str:
        from importlib.metadata import version

        return f"{version('taskiq')} (taskiq-redis {version('taskiq-redis')})"

    def worker_commands(self) -> list[list[str]]:
        return [[script("taskiq"), "worker", f"{__name__}:broker", "--workers", "2", "--log-level", "WARNING"]]

    async def open(self) -> None:
        await broker.startup()

    async def close(self) -> None:
        await broker.shutdown()

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        t = await (echo.kiq(arg) if task == "echo" else noop.kiq())
        return t.task_id

    async def enqueue_many(self, n: int) -> list[Any]:
        tasks = await gather_chunked([noop.kiq() for _ in range(n)], self.chunk)
        return [t.task_id for t in tasks]

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(handle)
