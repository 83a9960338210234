"""latency: enqueue -> result visible to the caller (``add_task(..., timeout=5)``), idle and under load.

One worker process. Idle: nothing else runs, and blocks of raw round trips (the ceiling's
XADD -> XREADGROUP -> RPUSH -> BLPOP loop) alternate with blocks of ours, so that the ratio
compares round trips taken in the same seconds. Under load: a background producer
(``qtasks_fast.benchmarks._load``) enqueues no-op tasks at ``--load-rate`` into the same queue.
Then the worker pool's CPU use is measured while it has nothing to do: it must be ~0
(a worker blocks in Redis instead of polling).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.ceiling import RawEcho
from qtasks_fast.benchmarks.common import (
    Ctx,
    WorkerPool,
    app_keys,
    command_cost,
    command_stats,
    cpu_percent,
    percentile,
    spawn_module,
    try_plot,
    unique,
)
from qtasks_fast.benchmarks.summary import ceiling_value

WARMUP = 20
#: round trips per block when raw and qtasks_fast round trips alternate
BLOCK = 100
#: round trips whose Redis commands are counted (INFO commandstats), after the paired probe
COUNTED = 200


def probe(app: Any, samples: int, warmup: int = WARMUP) -> list[float]:
    out = []
    for i in range(samples + warmup):
        t = time.perf_counter()
        task = app.add_task("noop", timeout=5)
        elapsed = time.perf_counter() - t
        if task is None or task.status != "success":
            raise RuntimeError(f"round trip {i} did not return a successful task within 5 s: {task!r}")
        if i >= warmup:
            out.append(elapsed)
    return sorted(out)


def probe_paired(ctx: Ctx, app: Any, samples: int) -> tuple[list[float], list[float]]:
    """``samples`` round trips of ours and as many raw ones, in alternating blocks; both sorted."""
    ours: list[float] = []
    raw: list[float] = []
    probe(app, 0)  # warm-up
    with RawEcho(ctx) as echo:
        while len(ours) < samples:
            k = min(BLOCK, samples - len(ours))
            raw += [echo.trip() for _ in range(k)]
            ours += probe(app, k, warmup=0)
    return sorted(ours), sorted(raw)


def load_rate(ctx: Ctx) -> int:
    if ctx.args.load_rate:
        return int(ctx.args.load_rate)
    by_p = ctx.results.get("drain", {}).get("headline", {}).get("rate_by_processes", {})
    return int(by_p[1] / 3) if by_p.get(1) else 2000


def stats(rts: list[float]) -> dict[str, float]:
    return {"p50 µs": percentile(rts, 50) * 1e6, "p99 µs": percentile(rts, 99) * 1e6,
            "p99.9 µs": percentile(rts, 99.9) * 1e6, "max µs": rts[-1] * 1e6 if rts else float("nan")}


def run(ctx: Ctx) -> dict[str, Any]:
    samples = ctx.args.latency_samples
    rate = load_rate(ctx)
    idle_seconds = 2.0 if ctx.quick else 3.0
    ctx.begin("latency", 4)
    name = unique("bl")
    app = make_app(name, ctx.url)
    with app_keys(ctx, name), WorkerPool(ctx, name, 1, concurrency=ctx.args.concurrency, label="latency") as pool:
        ctx.step("latency: idle")
        r = ctx.redis()
        idle, raw_idle = probe_paired(ctx, app, samples)
        stats0 = command_stats(r)  # Redis commands of our round trips alone
        probe(app, COUNTED, warmup=0)
        per_trip = command_cost(stats0, command_stats(r), COUNTED)
        ctx.step("latency: worker idle CPU")
        time.sleep(0.5)
        idle_cpu = cpu_percent(pool.all_processes(), idle_seconds)
        ctx.step(f"latency: under load ({rate} tasks/s)")
        load = spawn_module("qtasks_fast.benchmarks._load", [ctx.url, name, str(rate)], stderr_to=ctx.logs / "load.log")
        try:
            assert load.stdout is not None
            load.stdout.readline()  # "ready"
            time.sleep(0.5)
            t0 = time.monotonic()
            loaded = probe(app, samples)
            load_secs = time.monotonic() - t0
        finally:
            load.send_signal(signal.SIGTERM)
            out, _ = load.communicate(timeout=30)
        sent = int(out.decode().split()[-1]) if out.strip() else 0
        ctx.step()
    ctx.end()
    ref = percentile(raw_idle, 50) * 1e6  # the raw round trips alternated with ours
    ceiling_ref = ceiling_value(ctx.results, "rt_p50_us")
    rows = []
    for case, rts in (("idle", idle), (f"under load (~{rate:,} tasks/s background)", loaded),
                      ("raw round trip, alternated with 'idle'", raw_idle)):
        s = stats(rts)
        rows.append({"case": case, "samples": len(rts), **s,
                     "× raw p50": round(s["p50 µs"] / ref, 2) if ref else "n/a"})
    notes = [f"background producer sent {sent:,} tasks in ~{load_secs:.1f} s of probing "
             f"({sent / max(load_secs, 1e-9):,.0f} tasks/s incl. its start-up).",
             f"worker pool CPU while idle (supervisor + 1 worker, {idle_seconds:.0f} s): {idle_cpu:.2f} % of one core."]
    calls = {c: v["calls/task"] for c, v in per_trip.items() if v["calls/task"] >= 0.5}
    notes.append("Redis commands per idle round trip, producer and worker together (INFO commandstats; a Lua "
                 "script's inner calls are listed too): " + ", ".join(f"{c} {v:g}" for c, v in calls.items()) + ".")
    notes.append(f"raw round trip p50 alternated with the idle probe (blocks of {BLOCK}): {ref:.0f} µs "
                 f"(XADD->XREADGROUP->RPUSH->BLPOP); the column '× raw p50' divides by it"
                 + (f"; the ceiling suite's own raw p50, minutes apart: {ceiling_ref:.0f} µs." if ceiling_ref else "."))
    result: dict[str, Any] = {
        "params": {"samples": samples, "load_rate": rate, "processes": 1},
        "rows": rows,
        "notes": notes,
        "headline": {"p50_idle_us": rows[0]["p50 µs"], "raw_rt_p50_us": ref, "p99_idle_us": rows[0]["p99 µs"],
                     "p999_idle_us": rows[0]["p99.9 µs"], "p50_load_us": rows[1]["p50 µs"],
                     "p99_load_us": rows[1]["p99 µs"], "idle_cpu_pct": idle_cpu, "commands_per_round_trip": per_trip},
    }

    def draw(ax: Any) -> None:
        for label, rts in (("idle", idle), ("under load", loaded)):
            ax.plot([x * 1e3 for x in rts], [i / len(rts) for i in range(len(rts))], label=label)
        if ref:
            ax.axvline(ref / 1e3, color="gray", linestyle="--", label="raw round trip p50")
        ax.set_xscale("log")
        ax.set_xlabel("enqueue -> result visible (ms)")
        ax.set_ylabel("fraction of round trips")
        ax.set_title("latency CDF, 1 worker process")
        ax.legend()

    png, why = try_plot(ctx.out / "latency.png", draw)
    if png:
        result["plot"] = png
    else:
        notes.append(str(why))
    return result
