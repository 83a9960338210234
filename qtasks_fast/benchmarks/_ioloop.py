"""The no-queue reference of the io-redis suite, run as separate processes.

    python -m qtasks_fast.benchmarks._ioloop URL KEY N CONCURRENCY READY GO

``N`` awaits of ``INCR KEY`` on one shared ``redis.asyncio`` client under uvloop, ``CONCURRENCY`` at a
time (what a worker process with that concurrency does when each task sends one command, minus the queue).
Signals ``READY`` (RPUSH), waits for ``GO`` (BLPOP), prints ``{"start": t, "end": t, "cpu": s}`` (unix times; the
process's CPU seconds between them).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import redis
import redis.asyncio
import uvloop


async def loop(url: str, key: str, n: int, concurrency: int) -> tuple[float, float, float]:
    client = redis.asyncio.Redis.from_url(url)
    left = n

    async def one() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.incr(key)

    await client.ping()  # connected before the clock starts, as a warmed-up worker is
    start, cpu = time.time(), time.process_time()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    end, cpu = time.time(), time.process_time() - cpu
    await client.aclose()
    return start, end, cpu


def main(argv: list[str]) -> int:
    url, key, n, concurrency, ready, go = argv
    r = redis.Redis.from_url(url)
    r.rpush(ready, 1)
    r.blpop([go], timeout=60)
    start, end, cpu = uvloop.run(loop(url, key, int(n), int(concurrency)))
    print(json.dumps({"start": start, "end": end, "cpu": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
