"""enqueue: producer-side rates with no worker running.

* one by one: sync ``app.add_task("noop")`` in a loop (one round trip each);
* bulk: ``app.add_tasks`` in chunks of ``--chunk`` (one Lua call per chunk);
* async concurrent: ``qtasks_fast.asyncio.QueueTasks.add_task`` from ``--async-concurrency``
  coroutines run with ``asyncio.gather``.

Bulk is compared with raw pipelined XADD (the ceiling's loop, same chunk size), and one by one with
one XADD per round trip; both raw loops run in this suite's own rotation, each just before the case
it bounds, and a ratio is the median of the per-repeat ratios (runs seconds apart, not minutes).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.ceiling import xadd_once, xadd_single
from qtasks_fast.benchmarks.common import Ctx, cleanup_app, median, pct, ratio, unique


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
    chunk = ctx.args.chunk
    raw_one, raw_bulk = "raw XADD, one per round trip", f"raw pipelined XADD, batches of {chunk}"
    one_case, bulk_case = "one by one (add_task)", f"bulk (add_tasks, chunks of {chunk})"
    async_case = f"async concurrent (gather, {ctx.args.async_concurrency} coroutines)"
    cases: list[tuple[str, Any]] = [
        (raw_one, lambda c, k: xadd_single(c, k)), (one_case, one_by_one),
        (raw_bulk, lambda c, k: xadd_once(c, k, chunk)), (bulk_case, bulk), (async_case, concurrent)]
    ctx.begin("enqueue", len(cases) * reps)
    rates: dict[str, list[float]] = {c: [] for c, _ in cases}
    for _ in range(reps):  # interleaved, so a noisy moment hits every case alike
        for case, fn in cases:
            ctx.step(f"enqueue: {case.split(' (')[0][:30]}")
            rates[case].append(fn(ctx, n))
    ctx.end()

    def paired(mine: str, raw: str) -> float:
        return median(a / b for a, b in zip(rates[mine], rates[raw], strict=True))

    # bulk vs pipelined XADD; one-by-one and async (one call per task) vs one XADD per round trip
    refs = {one_case: paired(one_case, raw_one), bulk_case: paired(bulk_case, raw_bulk),
            async_case: ratio(median(rates[async_case]), median(rates[raw_one]))}
    rows = [{"case": c, "n": n, "tasks/s": median(v), "runs": [round(x) for x in v],
             "% raw XADD (same batching)": pct(refs[c]) if c in refs else "100%"}
            for c, v in rates.items()]
    one, blk, conc = (median(rates[c]) for c in (one_case, bulk_case, async_case))
    return {
        "params": {"n": n, "repeats": reps, "chunk": ctx.args.chunk, "async_concurrency": ctx.args.async_concurrency},
        "rows": rows,
        "notes": ["The async client takes one connection per in-flight add_task, up to the connection's "
                  "max_connections (128); calls beyond it wait for a free one.",
                  "Every call is the product's full enqueue (uuid, argument validation, msgpack, one Lua call, the "
                  "returned Task records), as a real producer does; no worker runs."],
        "headline": {"one_rate": one, "bulk_rate": blk, "async_rate": conc, "bulk_paired_ratio": refs[bulk_case],
                     "raw_xadd_rate": median(rates[raw_bulk]), "one_paired_ratio": refs[one_case]},
    }
