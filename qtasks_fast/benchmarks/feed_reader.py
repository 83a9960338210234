"""``python -m qtasks_fast.benchmarks.feed_reader``: what the web server's one reader of the event feed pays per
event on Redis, through the event objects (``service.events`` + ``sse.encode_events``, the path before issue 13's
raw reader) and through their JSON (``service.raw_events`` + ``sse.encode_raw``), alternating in one process.

Why a script of its own: at 40,000 tasks/s a fleet writes ~120,000 events a second, and the SSE fan-out's cost
is this reader's CPU per event (the clients share its frames). Measured as CPU time of this process
(``time.process_time``: the Redis server's time is not in it), which the machine's other load moves far less
than a rate. The events are written as a drain writes them: enqueues of ``--batch`` tasks, fetches and settles
of up to ``--fetch`` (one ``P:ev`` entry each), in a private ``redis-server``. The frames of both paths are
checked byte for byte before timing.

    python -m qtasks_fast.benchmarks.feed_reader --tasks 5000 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qtasks_fast import QueueTasks, service
from qtasks_fast._corelib import core
from qtasks_fast.backends import make_backend
from qtasks_fast.benchmarks.common import PrivateRedis
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import Envelope
from qtasks_fast.web.sse import encode_events, encode_raw

APP = "benchfeed"
PAGE = 1000
HANDLERS = {"noop": object()}


async def load(url: str, tasks: int, batch: int, fetch: int) -> None:
    """``tasks`` noop tasks enqueued ``batch`` at a time, fetched and settled ``fetch`` at a time."""
    broker, storage = make_backend(url, APP, GlobalConfig())
    consumer = copy.copy(broker)
    await consumer.start("bench-0", "bench-0", ["default"], storage)
    try:
        done = 0
        while done < tasks:
            n = min(batch, tasks - done)
            await broker.enqueue([Envelope(uuid=core.new_uuid()[1], task_name="noop", args=[]) for _ in range(n)],
                                 storage)
            got = 0
            while got < n:
                ready: list[Any] = []
                bad: list[Any] = []
                for queue, flat in await consumer.fetch(min(fetch, n - got), 0.0):
                    core.decode_batch(queue, flat, HANDLERS, 1 << 20, ready, bad)
                if bad:
                    raise RuntimeError(f"feed_reader: {len(bad)} fetched messages did not decode: {bad[0][1]}")
                await consumer.settle([(d, "success", core.encode(None), "", "") for d in ready], storage, [])
                got += len(ready)
            done += n
    finally:
        await consumer.close()
        await storage.close()


async def read_old(app: QueueTasks, frames: bool) -> tuple[int, bytes]:
    cursor: str | None = None
    n, out = 0, list[bytes]()
    while True:
        page = await service.events(app, cursor, PAGE)
        if not page.events:
            return n, b"".join(out)
        n += len(page.events)
        if frames:
            out.append(encode_events(page.events))
        cursor = page.cursor


async def read_raw(app: QueueTasks, frames: bool) -> tuple[int, bytes]:
    cursor: str | None = None
    n, out = 0, list[bytes]()
    while True:
        page = await service.raw_events(app, cursor, PAGE)
        if not page.ids:
            return n, b"".join(out)
        n += len(page.ids)
        if frames:
            out.append(encode_raw(page.ids, page.data))
        cursor = page.cursor


async def cpu_us(read: Callable[[], Awaitable[tuple[int, bytes]]]) -> float:
    """CPU µs per event of one full read of the feed."""
    t = time.process_time()
    n, _ = await read()
    return (time.process_time() - t) * 1e6 / n


async def measure(url: str, rounds: int) -> dict[str, list[float]]:
    app = QueueTasks(APP, broker_url=url)
    n_old, old = await read_old(app, True)
    n_raw, raw = await read_raw(app, True)
    if (n_old, old) != (n_raw, raw):
        raise AssertionError(f"the two paths' frames differ ({n_old} vs {n_raw} events)")
    print(f"{n_old:,} events, frames identical ({len(old):,} bytes)", flush=True)
    cases: dict[str, Callable[[], Awaitable[tuple[int, bytes]]]] = {
        "events (TaskEvent objects)": lambda: read_old(app, False),
        "events + SSE frames": lambda: read_old(app, True),
        "raw_events (JSON)": lambda: read_raw(app, False),
        "raw_events + SSE frames": lambda: read_raw(app, True),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for r in range(rounds):
        for k in (list(cases) if r % 2 == 0 else list(reversed(cases))):
            times[k].append(await cpu_us(cases[k]))
    return times


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.feed_reader", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=5000, help="noop tasks (three events each)")
    p.add_argument("--batch", type=int, default=100, help="tasks per enqueue")
    p.add_argument("--fetch", type=int, default=32, help="tasks per fetch and settle")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    private = PrivateRedis(Path(tempfile.mkdtemp(prefix="qtasks-bench-feed-")))
    url = private.start()
    try:
        asyncio.run(load(url, args.tasks, args.batch, args.fetch))
        times = asyncio.run(measure(url, args.rounds))
    finally:
        private.stop()
    print("CPU µs per event (this process), rounds alternating")
    for k, v in times.items():
        print(f"  {k:28s} median {statistics.median(v):5.2f}  min {min(v):5.2f}  rounds "
              + " ".join(f"{x:.2f}" for x in v))


if __name__ == "__main__":
    main()
