"""Dramatiq peer: RedisBroker + Results middleware (RedisBackend), 2 processes x 8 threads."""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

from ._base import PeerBench, redis_url, script

DB = 8
URL = redis_url(DB)

broker = RedisBroker(url=URL)
backend = RedisBackend(url=URL)
broker.add_middleware(Results(backend=backend, result_ttl=3_600_000))  # default 10 min; keep 1 h
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", store_results=True)
def noop() -> int:
    return 1


@dramatiq.actor(actor_name="echo", store_results=True)
def echo(x: int) -> int:
    return x


class Bench(PeerBench):
    name = "dramatiq"
    dist = "dramatiq"
    db = DB
    worker_desc = "dramatiq --processes 2 --threads 8"

    def worker_commands(self) -> list[list[str]]:
        return [[script("dramatiq"), __name__, "--processes", "2", "--threads", "8"]]

    async def enqueue(self, task: str, arg: int = 0) -> Any:
        msg = echo.send(arg) if task == "echo" else noop.send()
        return backend.build_message_key(msg)

    def probe(self, pipe: Any, handle: Any) -> None:
        pipe.exists(handle)
