"""drain: N tasks enqueued in bulk while worker processes run; tasks/s from first enqueue to last stored result.

Workers are the real CLI (``python -m qtasks_fast -A qtasks_fast.benchmarks.apps:app run --processes P``)
in a subprocess, started and warmed up before the clock starts. The end of a run is the
newest record's ``updated`` time once every record is final, and every one must be ``success``.
Cases: 1/2/4 processes with a no-op task; fire-and-forget (when the product has it); echo
payloads of 64 B, 4 KiB, 64 KiB; ``index_results`` off (``QTASKS_INDEX_RESULTS=0``); and the
ceiling's raw streams drain, run in the same rotation just before the headline case, so that the
headline ratio pairs runs made seconds apart (the median of the per-repeat ratios).
CPU% columns are % of one core over the run, for the workers, redis-server and this producer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any

import psutil

from qtasks_fast.benchmarks import profile as profiler
from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.ceiling import drain_once
from qtasks_fast.benchmarks.common import (
    CpuMeter,
    Ctx,
    WorkerPool,
    app_keys,
    cleanup_prefix,
    command_cost,
    command_stats,
    median,
    pct,
    ratio,
    redis_process,
    try_plot,
    unique,
    wait_all_final,
    wait_finished_count,
)
from qtasks_fast.benchmarks.summary import ceiling_value
from qtasks_fast.config import GlobalConfig

PAYLOADS = (("64 B", 64), ("4 KiB", 4096), ("64 KiB", 65536))
#: bytes of payload kept in Redis per run at most (records, streams and results each hold a copy)
PAYLOAD_BUDGET = 192 * 2**20
#: config fields a fire-and-forget mode could be switched with, if the product grows one
FIRE_AND_FORGET_FIELDS = ("store_results", "results", "fire_and_forget")


def fire_and_forget_field() -> str | None:
    names = {f.name for f in dataclasses.fields(GlobalConfig)}
    return next((f for f in FIRE_AND_FORGET_FIELDS if f in names), None)


def run_once(ctx: Ctx, app: Any, pool: WorkerPool, n: int, call: tuple[str, tuple[Any, ...], dict[str, Any]],
             records: bool = True) -> dict[str, Any]:
    """Enqueue ``n`` copies of ``call`` in chunks and wait until all are done; rates and CPU use."""
    r = ctx.redis()
    chunk = ctx.args.chunk
    calls = [call] * n
    r.delete(f"qtf:{{{app.name}:default}}:count")  # the completion signal counts this run only
    stats0 = command_stats(r)
    meter = CpuMeter({"workers": pool.children(), "redis": redis_process(ctx.url),
                      "producer": [psutil.Process()]}).start()
    t0 = time.time()
    uuids: list[str] = []
    for i in range(0, n, chunk):
        uuids += [str(t.uuid) for t in app.add_tasks(calls[i:i + chunk])]
    t_enq = time.time()
    timeout = 120 + n / 200
    if records:
        wait_finished_count(r, app.name, n, timeout)
        cpu = meter.stop()  # verifying every record below is not part of the measured work
        end, counts = wait_all_final(r, app.name, uuids, timeout)
        if counts.get("success") != n:
            raise RuntimeError(f"drain of {n} {call[0]} tasks ended with {counts}, expected {n} success")
    else:
        from qtasks_fast.benchmarks.common import stream_key, wait_group_drained

        done = wait_group_drained(r, stream_key(app.name), app.name, timeout)
        if done is None:
            raise RuntimeError(f"fire-and-forget drain of {n} tasks did not finish in {timeout}s")
        end = done
        cpu = meter.stop()
    commands = command_cost(stats0, command_stats(r), n)
    cleanup_prefix(r, f"qtf:{{{app.name}:default}}:t:*")  # keep Redis small between repeats
    return {"rate": n / (end - t0), "enqueue_rate": n / (t_enq - t0), "seconds": end - t0, "commands": commands,
            **cpu}


def warm_up(ctx: Ctx, app: Any, pool: WorkerPool) -> None:
    run_once(ctx, app, pool, min(500, ctx.n), ("noop", (), {}))


Call = tuple[str, tuple[Any, ...], dict[str, Any]]
#: the pool name of the raw streams drain case (no worker pool: the ceiling's loop)
RAW = "raw"


@dataclasses.dataclass
class PoolSpec:
    """A worker pool to start for a set of cases."""

    processes: int
    label: str
    env: dict[str, str] | None = None
    concurrency: int | None = None
    pin: bool = False


@dataclasses.dataclass
class Case:
    """One measured row: ``n`` copies of ``call`` through the pool named ``pool``."""

    pool: str
    name: str
    call: Call
    n: int
    records: bool = True


def run_cases(ctx: Ctx, pools: dict[str, PoolSpec], cases: list[Case]) -> list[list[dict[str, Any]]]:
    """Start every pool (idle workers block in Redis and cost nothing), then run the cases
    interleaved — repeat 1 of every case, then repeat 2, ... — so that a noisy moment on a
    shared machine hits all of them alike. Returns the runs of each case, in order."""
    runs: list[list[dict[str, Any]]] = [[] for _ in cases]
    with contextlib.ExitStack() as stack:
        live: dict[str, tuple[Any, WorkerPool]] = {}
        for key, spec in pools.items():
            name = unique("bd")
            app = make_app(name, ctx.url)
            stack.enter_context(app_keys(ctx, name))
            pool = stack.enter_context(WorkerPool(ctx, name, spec.processes, concurrency=spec.concurrency,
                                                  pin_cpus=spec.pin, env=spec.env, label=spec.label))
            warm_up(ctx, app, pool)
            live[key] = (app, pool)
        for rep in range(ctx.repeats):
            for i, case in enumerate(cases):
                ctx.step(f"{ctx.suite}: {case.name[:30]} (run {rep + 1})")
                if case.pool == RAW:
                    runs[i].append(drain_once(ctx, case.n, ctx.args.chunk, ctx.args.ceiling_consumers, prefill=False))
                    continue
                app, pool = live[case.pool]
                runs[i].append(run_once(ctx, app, pool, case.n, case.call, case.records))
    return runs


def middle(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by rate), so its CPU columns go with the rate shown."""
    return sorted(runs, key=lambda x: x["rate"])[len(runs) // 2]


def row_of(case: Case, processes: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = middle(runs)
    return {"case": case.name, "processes": processes, "n": case.n, "tasks/s": median(x["rate"] for x in runs),
            "runs": [round(x["rate"]) for x in runs], "enqueue tasks/s": best["enqueue_rate"],
            "workers CPU%": best["workers"], "redis CPU%": best["redis"], "producer CPU%": best["producer"],
            **per_task_cpu(best, case.n), "_commands": best["commands"]}


def per_task_cpu(res: dict[str, Any], n: int) -> dict[str, float]:
    """CPU µs per task of workers, redis-server and producer: steadier than rates on a busy machine."""
    return {f"{k} µs/task": res[f"{k}_s"] * 1e6 / n for k in ("workers", "redis", "producer") if f"{k}_s" in res}


def run(ctx: Ctx) -> dict[str, Any]:
    n = ctx.n
    counts = ctx.args.process_counts
    ref_p = ctx.args.ceiling_consumers if ctx.args.ceiling_consumers in counts else max(counts)
    ff = fire_and_forget_field()
    payload_cases: list[tuple[str, Call, int]] = []
    for label, size in PAYLOADS:
        pn = max(50, min(n, PAYLOAD_BUDGET // (3 * size)))
        if ctx.quick:
            pn = min(pn, 200 if size > 4096 else n)
        payload_cases.append((f"echo {label} payload", ("echo", (b"x" * size,), {}), pn))
    noop: Call = ("noop", (), {})
    pools = {f"p{p}": PoolSpec(p, f"drain-p{p}", concurrency=ctx.args.concurrency) for p in counts}
    pools["noindex"] = PoolSpec(ref_p, f"drain-p{ref_p}-noindex", {"QTASKS_INDEX_RESULTS": "0"}, ctx.args.concurrency)
    cases: list[Case] = []
    for p in counts:
        if p == ref_p:
            cases.append(Case(RAW, f"raw streams drain ({ctx.args.ceiling_consumers} consumers, same rotation)",
                              noop, n))
        cases.append(Case(f"p{p}", "noop", noop, n))
        if p == ref_p:
            cases.append(Case("noindex", "noop, index_results=0", noop, n))
            cases.append(Case(f"p{p}", "noop_sync (inline sync task)", ("noop_sync", (), {}), n))
            cases += [Case(f"p{p}", name, call, pn) for name, call, pn in payload_cases]
    notes: list[str] = []
    if ff:
        pools["ff"] = PoolSpec(ref_p, f"drain-p{ref_p}-ff", {f"QTASKS_{ff.upper()}": "0"}, ctx.args.concurrency)
        cases.append(Case("ff", f"noop, fire-and-forget ({ff}=0)", noop, n, records=False))
    else:
        notes.append("fire-and-forget: not measured — qtasks_fast has no mode that skips storing results "
                     "(GlobalConfig has none of " + ", ".join(FIRE_AND_FORGET_FIELDS) + "); every task writes "
                     "its record. The closest is index_results=0 (row above), which skips the query side's indexes "
                     "and events.")
    ctx.begin("drain", len(cases) * ctx.repeats + (1 if ctx.args.profile else 0))
    all_runs = run_cases(ctx, pools, cases)
    raw_runs = next(r for c, r in zip(cases, all_runs, strict=True) if c.pool == RAW)
    ref_runs = next(r for c, r in zip(cases, all_runs, strict=True) if c.pool == f"p{ref_p}" and c.name == "noop")
    paired = sorted(mine["rate"] / raw["rate"] for mine, raw in zip(ref_runs, raw_runs, strict=True))
    paired_ratio = median(paired)
    raw_rate = median(x["rate"] for x in raw_runs)
    rows = [row_of(c, pools[c.pool].processes, r) if c.pool != RAW else
            {"case": c.name, "processes": ctx.args.ceiling_consumers, "n": c.n, "tasks/s": raw_rate,
             "runs": [round(x["rate"]) for x in r], "redis µs/task": median(x["redis_us"] for x in r)}
            for c, r in zip(cases, all_runs, strict=True)]
    notes.append(f"headline ratio, paired: {ref_p}-process noop / raw drain of the same repeat = "
                 + ", ".join(f"{x:.0%}" for x in paired) + f" (median {paired_ratio:.0%}).")
    ceiling = raw_rate or ceiling_value(ctx.results, "drain_rate")
    for row in rows:
        row["% ceiling"] = pct(ratio(row["tasks/s"], ceiling)) if ceiling else "n/a"
    rows[[c.pool for c in cases].index(RAW)]["% ceiling"] = "100%"
    by_p = {row["processes"]: row["tasks/s"] for row in rows if row["case"] == "noop"}
    on = by_p.get(ref_p)
    off = next((row["tasks/s"] for row in rows if row["case"] == "noop, index_results=0"), None)
    if on and off:
        notes.append(f"index cost: index_results=1 runs at {on / off:.0%} of index_results=0 "
                     f"({on:,.0f} vs {off:,.0f} tasks/s, {ref_p} processes).")
    if ceiling is None:
        notes.append("% ceiling: n/a — run with the ceiling suite for ratios.")
    ref_row = next((row for row in rows if row["case"] == "noop" and row["processes"] == ref_p), None)
    if ref_row and ref_row.get("_commands"):
        top = list(ref_row["_commands"].items())[:8]
        notes.append(f"Redis server time per task (INFO commandstats, noop, {ref_p} processes; Lua's inner calls are "
                     "also inside fcall): " + ", ".join(f"{c} {v['µs/task']:.1f} µs ({v['calls/task']:g} calls)"
                                                         for c, v in top) + ".")
    notes.append(f"{os.cpu_count()} logical CPUs are shared by producer, workers and redis-server: "
                 "more processes than cores only add contention.")
    prof = None
    if ctx.args.profile:
        ctx.step("drain: py-spy profile of a worker", 0)
        prof = profiler.profile_drain(ctx, max(n, 30_000))
        notes.append(f"py-spy profile of a 1-process worker during a drain: {prof.get('summary_file')}")
        ctx.step()
    ctx.end()
    result: dict[str, Any] = {
        "params": {"n": n, "repeats": ctx.repeats, "chunk": ctx.args.chunk, "process_counts": counts,
                   "concurrency": ctx.args.concurrency or "default"},
        "rows": rows,
        "notes": notes,
        "headline": {"rate_by_processes": by_p, "vs_ceiling_processes": ref_p,
                     "redis_us_per_task": ref_row.get("redis µs/task") if ref_row else None,
                     "redis_commands": ref_row.get("_commands") if ref_row else None,
                     "rate_vs_ceiling": on, "index_off_rate": off, "best_rate": max(by_p.values()),
                     "paired_raw_rate": raw_rate, "paired_ratio": paired_ratio, "paired_ratios": paired,
                     "fire_and_forget": bool(ff)},
    }
    if prof:
        result["profile"] = prof

    def draw(ax: Any) -> None:
        ps = sorted(by_p)
        ax.plot(ps, [by_p[p] for p in ps], "o-", label="qtasks_fast noop drain")
        if ceiling:
            ax.axhline(ceiling, color="gray", linestyle="--", label=f"raw Redis drain ({ctx.args.ceiling_consumers} "
                                                                     "consumers)")
            ax.axhline(0.6 * ceiling, color="red", linestyle=":", label="target: 60% of raw")
        ax.set_xlabel("worker processes")
        ax.set_ylabel("tasks/s")
        ax.set_xticks(ps)
        ax.set_ylim(bottom=0)
        ax.set_title(f"drain of {n:,} no-op tasks")
        ax.legend()

    png, why = try_plot(ctx.out / "drain.png", draw)
    if png:
        result["plot"] = png
    else:
        notes.append(str(why))
    return result
