"""enqueue: producer-side rates with no worker running.

* one by one: sync ``app.add_task("noop")`` in a loop (one round trip each);
* bulk: ``app.add_tasks`` in chunks of ``--chunk`` (one Lua call per chunk);
* async concurrent: ``qtasks_fast.asyncio.QueueTasks.add_task`` from ``--async-concurrency``
  coroutines run with ``asyncio.gather``.

Bulk is compared with the raw pipelined XADD rate of the ceiling suite (same chunk size).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.apps import make_app
from benchmarks.common import Ctx, cleanup_app, median, pct, ratio, unique
from benchmarks.summary import ceiling_value
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks


def one_by_one(ctx: Ctx, n: int) -> float:
    name = unique("be")
    app = make_app(name, ctx.url)
    try:
        add = app.add_task
        t0 = time.perf_counter()
        for _ in range(n):
            add("noop")
        return n / (time.perf_counter() - t0)
    finally:
        cleanup_app(ctx.redis(), name)


def bulk(ctx: Ctx, n: int) -> float:
    name = unique("be")
    app = make_app(name, ctx.url)
    chunk = ctx.args.chunk
    calls: list[tuple[str, tuple[()], dict[str, object]]] = [("noop", (), {})] * n
    try:
        app.add_tasks(calls[:10])  # connect and load the script outside the clock
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            app.add_tasks(calls[i:i + chunk])
        return n / (time.perf_counter() - t0)
    finally:
        cleanup_app(ctx.redis(), name)


def concurrent(ctx: Ctx, n: int) -> float:
    name = unique("be")
    width = ctx.args.async_concurrency

    async def go() -> float:
        app = make_app(name, ctx.url, AsyncQueueTasks)
        await app.add_task("noop")
        left = iter(range(n))

        async def worker() -> None:
            for _ in left:
                await app.add_task("noop")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(width)))
        elapsed = time.perf_counter() - t0
        await app.broker.close()
        return n / elapsed

    try:
        return asyncio.run(go())
    finally:
        cleanup_app(ctx.redis(), name)


def run(ctx: Ctx) -> dict[str, Any]:
    n, reps = ctx.n, ctx.repeats
    ctx.begin("enqueue", 3 * reps)
    cases = [("one by one (add_task)", one_by_one), (f"bulk (add_tasks, chunks of {ctx.args.chunk})", bulk),
             (f"async concurrent (gather, {ctx.args.async_concurrency} coroutines)", concurrent)]
    rates: dict[str, list[float]] = {c: [] for c, _ in cases}
    for _ in range(reps):  # interleaved, so a noisy moment hits every case alike
        for case, fn in cases:
            ctx.step(f"enqueue: {case.split(' (')[0]}")
            rates[case].append(fn(ctx, n))
    ctx.end()
    # bulk vs pipelined XADD; one-by-one and async (one call per task) vs one XADD per round trip
    refs = [ceiling_value(ctx.results, "xadd_single_rate"), ceiling_value(ctx.results, "xadd_rate"),
            ceiling_value(ctx.results, "xadd_single_rate")]
    rows = [{"case": c, "n": n, "tasks/s": median(v), "runs": [round(x) for x in v],
             "% raw XADD (same batching)": pct(ratio(median(v), ref)) if ref else "n/a"}
            for (c, v), ref in zip(rates.items(), refs, strict=True)]
    one, blk, conc = (median(v) for v in rates.values())
    return {
        "params": {"n": n, "repeats": reps, "chunk": ctx.args.chunk, "async_concurrency": ctx.args.async_concurrency},
        "rows": rows,
        "notes": ["The async client takes one connection per in-flight add_task, up to the connection's "
                  "max_connections (128); calls beyond it wait for a free one.",
                  "Every call is the product's full enqueue (uuid, argument validation, msgpack, one Lua call, the "
                  "returned Task records), as a real producer does; no worker runs."],
        "headline": {"one_rate": one, "bulk_rate": blk, "async_rate": conc},
    }
