"""scaling: the no-op drain with 1, 2 and 4 worker processes over 1 and 2 queues, with Redis CPU per task.

Why a suite of its own: the drain suite serves one queue; whether a second queue (a second hash slot: its
own streams, P:q, P:ev, ...) lets a fleet go further, and at what point redis-server itself becomes the
limit, needs both axes in one run. Every pool is started up front (idle workers block in Redis and cost
nothing) and the cases run interleaved, repeat 1 of every case, then repeat 2, ..., so that a swing of
the machine hits all alike. A two-queue case enqueues half its tasks to each queue (one bulk call per
queue per chunk) to workers that serve both. Redis saturates where its CPU% nears 100 (one core: Redis
runs commands on one thread) while the rate stops growing; on a machine with fewer cores than
processes + Redis, the workers' contention for cores shows first.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import psutil

from qtasks_fast.benchmarks.apps import SECOND_QUEUE, make_app
from qtasks_fast.benchmarks.common import (
    CpuMeter,
    Ctx,
    WorkerPool,
    app_keys,
    cleanup_prefix,
    command_cost,
    command_stats,
    median,
    redis_process,
    unique,
)

QUEUES = (1, 2)


def _counts_key(app: str, queue: str) -> str:
    return f"qtf:{{{app}:{queue}}}:count"


def run_once(ctx: Ctx, app: Any, pool: WorkerPool, n: int, queues: int) -> dict[str, Any]:
    """Enqueue ``n`` no-op tasks (split over ``queues``) in bulk chunks; wait until all are finished."""
    r = ctx.redis()
    names = ["default", SECOND_QUEUE][:queues]
    keys = [_counts_key(app.name, q) for q in names]
    r.delete(*keys)  # the completion signal counts this run only
    calls = [app.tasks["noop" if i % queues == 0 else "noop_q2"].s() for i in range(n)]
    stats0 = command_stats(r)
    meter = CpuMeter(
        {"workers": pool.children(), "redis": redis_process(ctx.url), "producer": [psutil.Process()]}
    ).start()
    t0 = time.time()
    for i in range(0, n, ctx.args.chunk):
        app.add_tasks(calls[i : i + ctx.args.chunk])
    deadline = time.monotonic() + 120 + n / 200
    while True:
        counts: dict[Any, int] = {}
        for key in keys:
            for status, k in r.hgetall(key).items():  # type: ignore[union-attr]
                counts[status] = counts.get(status, 0) + int(k)
        if sum(counts.values()) >= n:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"scaling: {sum(counts.values())} of {n} tasks finished in time")
        time.sleep(0.002)
    end = time.time()
    cpu = meter.stop()
    if counts.get(b"success") != n:
        raise RuntimeError(f"scaling drain of {n} tasks over {queues} queue(s) ended with {counts}")
    commands = command_cost(stats0, command_stats(r), n)
    for q in names:
        cleanup_prefix(r, f"qtf:{{{app.name}:{q}}}:t:*")
    return {"rate": n / (end - t0), "commands": commands, **cpu}


def run(ctx: Ctx) -> dict[str, Any]:
    n = ctx.n
    counts = ctx.args.process_counts
    cases = [(q, p) for q in QUEUES for p in counts]
    runs: dict[tuple[int, int], list[dict[str, Any]]] = {c: [] for c in cases}
    ctx.begin("scaling", len(cases) * ctx.repeats)
    load0 = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        live: dict[tuple[int, int], tuple[Any, WorkerPool]] = {}
        for q, p in cases:
            name = unique("bs")
            app = make_app(name, ctx.url, queues=q)
            stack.enter_context(app_keys(ctx, name))
            pool = stack.enter_context(
                WorkerPool(
                    ctx,
                    name,
                    p,
                    concurrency=ctx.args.concurrency,
                    env={"QTASKS_BENCH_QUEUES": str(q)},
                    label=f"scaling-q{q}-p{p}",
                )
            )
            run_once(ctx, app, pool, min(500, n), q)  # warm up
            live[(q, p)] = (app, pool)
        for rep in range(ctx.repeats):
            for q, p in cases:
                ctx.step(f"scaling: {q} queue(s), {p} process(es) (run {rep + 1})")
                app, pool = live[(q, p)]
                runs[(q, p)].append(run_once(ctx, app, pool, n, q))
    ctx.end()
    load1 = os.getloadavg()[0]
    rows = []
    for (q, p), got in runs.items():
        mid = sorted(got, key=lambda x: x["rate"])[len(got) // 2]  # its CPU columns go with the rate shown
        top = next(iter(mid["commands"].items()), None)  # the costliest: the script, its inner commands included
        rows.append(
            {
                "queues": q,
                "processes": p,
                "tasks/s": round(median(x["rate"] for x in got)),
                "runs": [round(x["rate"]) for x in got],
                "redis CPU%": mid["redis"],
                "redis CPU µs/task": round(mid["redis_s"] * 1e6 / n, 2),
                "costliest command µs/task": f"{top[0]} {top[1]['µs/task']:.1f}" if top else "",
                "workers CPU%": mid["workers"],
                "workers CPU µs/task": round(mid["workers_s"] * 1e6 / n, 2),
                "producer CPU%": mid["producer"],
            }
        )
    by = {(row["queues"], row["processes"]): row for row in rows}
    best = max(rows, key=lambda row: row["tasks/s"])
    notes = [
        f"{n} no-op tasks per run, bulk add_tasks in chunks of {ctx.args.chunk}, {ctx.repeats} interleaved repeats "
        "(median rate; the CPU columns are of the median run). CPU% = % of one core over the run.",
        "redis CPU µs/task = redis-server's user+sys CPU over the run / tasks (the whole server: parsing, replies, "
        "Lua); costliest command = INFO commandstats time per task of the command costing most (the script: its "
        "inner commands included).",
        f"{psutil.cpu_count()} logical CPUs are shared by producer, workers and redis-server; the machine's 1-minute "
        f"load average was {load0:.1f} before the suite and {load1:.1f} after it (above the CPU count, other "
        "processes took cores from these: the CPU% columns then sum to less than the cores, and rates fall).",
        f"fastest: {best['queues']} queue(s), {best['processes']} process(es), {best['tasks/s']:,} tasks/s with "
        f"redis-server at {best['redis CPU%']}% of a core.",
    ]
    return {
        "params": {
            "n": n,
            "repeats": ctx.repeats,
            "chunk": ctx.args.chunk,
            "process_counts": counts,
            "queues": list(QUEUES),
        },
        "rows": rows,
        "notes": notes,
        "headline": {
            "rate": {f"q{q}p{p}": by[(q, p)]["tasks/s"] for q, p in cases},
            "redis_cpu_pct": {f"q{q}p{p}": by[(q, p)]["redis CPU%"] for q, p in cases},
            "redis_us_per_task": {f"q{q}p{p}": by[(q, p)]["redis CPU µs/task"] for q, p in cases},
        },
    }
