"""Huey peer: RedisHuey (blocking BRPOP dequeue, results hash), huey_consumer -w 2 -k process."""

from __future__ import annotations

from typing import Any

from huey import RedisHuey

from ._base import PeerBench, redis_url, script

DB = 14
URL = redis_url(DB)

huey = RedisHuey("peers", url=URL)


@huey.task()
def noop() -> int:
    return 1


@huey.task()
def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "huey"
    dist = "huey"
    db = DB
    worker_desc = "huey_consumer -w 2 -k process"

    def worker_commands(self) -> list[list[str]]:
        return [[script("huey_consumer"), f"{__name__}.huey", "-w", "2", "-k", "process", "-q"]]

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        res = echo(arg) if task == "echo" else noop()
        return res.id

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.hexists(huey.storage.result_key, handle)
