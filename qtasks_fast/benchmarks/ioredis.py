"""io-redis: tasks that each await one command on a shared ``redis.asyncio`` client, next to the same
command loop with no queue.

Each task of ours runs ``INCR`` on one ``redis.asyncio`` client its worker process shares (the commonest
real task body: a cache write, a counter, a lookup). The reference is :mod:`._ioloop`: as many processes,
each awaiting the same command on one such client with the same concurrency, and no queue at all — what
the tasks' own I/O costs, so the ratio is the share of the loop's rate the queue leaves. Cases alternate
(ours, loop, ours, ...) so a noisy moment hits both alike; the target reads the median of the per-repeat
ratios.
"""

from __future__ import annotations

import json
from typing import Any

from qtasks_fast.benchmarks.apps import IO_KEY, make_app
from qtasks_fast.benchmarks.common import (
    CpuMeter,
    Ctx,
    WorkerPool,
    app_keys,
    median,
    redis_process,
    spawn_module,
    unique,
)
from qtasks_fast.benchmarks.drain import run_once, warm_up

#: the issue 16 target: qtasks_fast's io-redis rate as a share of the no-queue loop's
IO_REDIS_GOAL = 0.80


def loop_once(ctx: Ctx, n: int, processes: int, concurrency: int) -> tuple[float, float, float]:
    """The no-queue loop: ``n`` commands over ``processes`` processes; (commands/s from the first start to the last
    end, CPU seconds of its processes, of redis-server meanwhile)."""
    r = ctx.redis()
    ready, go = unique("bench:ioloop:ready"), unique("bench:ioloop:go")
    share = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    procs = [spawn_module("qtasks_fast.benchmarks._ioloop", [ctx.url, IO_KEY, str(k), str(concurrency), ready, go],
                          stderr_to=ctx.logs / "ioredis.log") for k in share]
    try:
        for _ in procs:
            if r.blpop([ready], timeout=30) is None:
                raise TimeoutError("the no-queue loop processes did not start within 30 s; see logs/ioredis.log")
        meter = CpuMeter({"redis": redis_process(ctx.url)}).start()
        r.rpush(go, *([1] * processes))
        spans = []
        for p in procs:
            out, _ = p.communicate(timeout=120 + n / 1000)
            spans.append(json.loads(out.decode().strip().splitlines()[-1]))
        redis_s = meter.stop()["redis_s"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        r.unlink(ready, go)
    rate = n / (max(s["end"] for s in spans) - min(s["start"] for s in spans))
    return rate, sum(s["cpu"] for s in spans), redis_s


def run(ctx: Ctx) -> dict[str, Any]:
    n, reps = ctx.n, ctx.repeats
    processes, concurrency = 2, ctx.args.io_concurrency
    ctx.begin("io-redis", reps * 2 + 1)
    name = unique("bio")
    app = make_app(name, ctx.url)
    ours: list[dict[str, Any]] = []
    loop: list[float] = []
    loop_cpu: list[tuple[float, float]] = []  # the loop's processes' and redis-server's CPU seconds per run
    with app_keys(ctx, name), WorkerPool(ctx, name, processes, concurrency=concurrency, label="ioredis") as pool:
        ctx.step("io-redis: warm-up")
        warm_up(ctx, app, pool)
        run_once(ctx, app, pool, min(1000, n), ("io_redis", (), {}))
        loop_once(ctx, min(1000, n), processes, concurrency)
        for rep in range(reps):
            ctx.step(f"io-redis: tasks (run {rep + 1})")
            ours.append(run_once(ctx, app, pool, n, ("io_redis", (), {})))
            ctx.step(f"io-redis: no-queue loop (run {rep + 1})")
            rate, cpu, redis_s = loop_once(ctx, n, processes, concurrency)
            loop.append(rate)
            loop_cpu.append((cpu, redis_s))
    ctx.end()
    ctx.redis().unlink(IO_KEY)
    ratios = [o["rate"] / lp for o, lp in zip(ours, loop, strict=True)]
    # where the CPU of a run went, per task: the workers (the loop's processes do the body's share of it), Redis,
    # and the producer, whose enqueue shares the run's clock with the drain (the loop has none)
    rows = [{"repeat": i + 1, "qtasks_fast tasks/s": round(o["rate"]), "no-queue loop commands/s": round(lp),
             "ratio": round(q, 2), "workers µs/task": round(o["workers_s"] * 1e6 / n, 1),
             "workers % of a core": o.get("workers"), "Redis µs/task": round(o.get("redis_s", 0.0) * 1e6 / n, 1),
             "producer µs/task": round(o.get("producer_s", 0.0) * 1e6 / n, 1),
             "enqueue s / run s": f"{n / o['enqueue_rate']:.2f} / {o['seconds']:.2f}",
             "loop processes µs/command": round(lc[0] * 1e6 / n, 1), "loop Redis µs/command": round(lc[1] * 1e6 / n, 1),
             "CPU per task / per command": round(cpu_total(o, n) / (sum(lc) * 1e6 / n), 2)}
            for i, (o, lp, q, lc) in enumerate(zip(ours, loop, ratios, loop_cpu, strict=True))]
    ratio = median(ratios)
    cost = ours[-1]["commands"]  # where Redis' time goes per task (the last repeat): fetch and settle batch sizes
    per_task = ", ".join(f"{c} {v['µs/task']} µs ({v['calls/task']} calls)" for c, v in list(cost.items())[:8])
    notes = [f"{n} tasks per run, {processes} worker processes at concurrency {concurrency}; each task awaits "
             "one INCR on a redis.asyncio client its process shares. The loop: the same command, client, "
             "processes and concurrency, no queue.",
             f"median ratio {ratio:.2f} (goal ≥ {IO_REDIS_GOAL:.0%} of the loop).",
             f"Redis server time per task (INFO commandstats, last repeat; Lua's inner calls also inside fcall): "
             f"{per_task}."]
    notes.append("CPU per task / per command: all CPU of a run (workers, Redis, producer) per task over the loop's "
                 "(its processes and Redis) per command; on a machine whose cores are the limit the ratio of rates "
                 "tends to its inverse, and it moves less than rates with the machine's other load.")
    return {"params": {"n": n, "repeats": reps, "processes": processes, "concurrency": concurrency},
            "rows": rows, "notes": notes,
            "headline": {"ratio": ratio, "rate": median(o["rate"] for o in ours), "loop_rate": median(loop),
                         "workers_us": median(o["workers_s"] * 1e6 / n for o in ours),
                         "redis_us": median(o.get("redis_s", 0.0) * 1e6 / n for o in ours),
                         "loop_us": median(sum(lc) * 1e6 / n for lc in loop_cpu),
                         "cpu_ratio": median(cpu_total(o, n) / (sum(lc) * 1e6 / n)
                                             for o, lc in zip(ours, loop_cpu, strict=True))}}


def cpu_total(o: dict[str, Any], n: int) -> float:
    """CPU µs per task of a run of ours: workers, redis-server and the producer (whose enqueue is in the run)."""
    return sum(o.get(f"{k}_s", 0.0) for k in ("workers", "redis", "producer")) * 1e6 / n
