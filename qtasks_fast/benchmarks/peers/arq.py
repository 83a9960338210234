"""arq peer: two ``arq WorkerSettings`` processes (defaults: max_jobs=10, poll_delay=0.5s)."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import result_key_prefix

from ._base import PeerBench, gather_chunked, redis_url, script

DB = 6
URL = redis_url(DB)

#: arq logs every job at INFO; all peers run their workers at WARNING
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "level": "WARNING"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


async def noop(ctx: dict[str, Any]) -> int:
    return 1


async def echo(ctx: dict[str, Any], x: int) -> int:
    return x


class WorkerSettings:
    functions = [noop, echo]
    redis_settings = RedisSettings.from_dsn(URL)


class Bench(PeerBench):
    name = "arq"
    dist = "arq"
    db = DB
    worker_desc = "2 x arq worker (max_jobs=10, poll_delay=0.5s defaults)"
    latency_gap = 0.5  # = poll_delay

    def __init__(self) -> None:
        super().__init__()
        self.pool: ArqRedis | None = None

    def worker_commands(self) -> list[list[str]]:
        cmd = [script("arq"), f"{__name__}.WorkerSettings", "--custom-log-dict", f"{__name__}.LOG_CONFIG"]
        return [cmd, list(cmd)]

    async def open(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(self.url))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        assert self.pool is not None
        job = await (self.pool.enqueue_job("echo", arg) if task == "echo" else self.pool.enqueue_job("noop"))
        assert job is not None
        return job.job_id

    async def enqueue_many(self, n: int) -> list[Any]:
        assert self.pool is not None
        jobs = await gather_chunked([self.pool.enqueue_job("noop") for _ in range(n)], self.chunk)
        return [j.job_id for j in jobs]

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(result_key_prefix + handle)
