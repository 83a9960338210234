"""memory: worker RSS idle and under load; Redis memory per 100k queued tasks and per 100k stored results.

RSS is sampled every 20 ms during a drain of N no-op tasks (1 worker process).
Redis memory is measured with no worker running, after enqueueing N no-op tasks:
the INFO ``used_memory`` delta (the whole server, so noisy on a shared Redis) and
MEMORY USAGE of this app's keys (stream exact, records sampled), both scaled to 100k.
Then one worker process drains them and the same two numbers are taken for what a
finished task leaves behind until ``result_ttl``: its record and its share of the indexes.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import redis

from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.common import Ctx, WorkerPool, app_keys, rss_mib, unique, wait_finished_count
from qtasks_fast.benchmarks.drain import run_once, warm_up

MIB = 2**20
KINDS = {"s": "stream entries (s:<prio>)", "t": "task records (t:<uuid>)", "q": "queued-task index (q)",
         "run": "running-task index (run)", "log": "recent-tasks index (log)", "count": "status counters (count)"}


def worker_rss(ctx: Ctx) -> dict[str, Any]:
    name = unique("bm")
    app = make_app(name, ctx.url)
    with app_keys(ctx, name), WorkerPool(ctx, name, 1, concurrency=ctx.args.concurrency, label="memory") as pool:
        sup, worker = pool.all_processes()[0], pool.children()[0]
        time.sleep(0.3)
        start_rss = rss_mib([worker])
        warm_up(ctx, app, pool)
        time.sleep(0.3)
        idle = rss_mib([worker])
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(rss_mib([worker]))
                time.sleep(0.02)

        t = threading.Thread(target=sample, daemon=True)
        t.start()
        res = run_once(ctx, app, pool, ctx.n, ("noop", (), {}))
        stop.set()
        t.join()
        after = rss_mib([worker])
        return {"supervisor": rss_mib([sup]), "start": start_rss, "idle": idle, "peak": max(peak),
                "after": after, "rate": res["rate"]}


def key_kind(key: bytes, app_name: str) -> str:
    """``qtf:{app:queue}:s:0`` -> ``s``: the key family after the queue prefix."""
    rest = key.decode(errors="replace").split("}:", 1)[-1]
    return rest.split(":", 1)[0] if rest else "?"


def app_key_memory(r: redis.Redis, app_name: str, sample: int = 200) -> dict[str, float]:
    """Bytes held by the app's keys, by family (MEMORY USAGE; families with many keys are sampled)."""
    families: dict[str, list[bytes]] = {}
    for key in r.scan_iter(match=f"qtf:{{{app_name}:*", count=5000):
        families.setdefault(key_kind(key, app_name), []).append(key)
    out: dict[str, float] = {}
    for kind, keys in families.items():
        picked = keys if len(keys) <= sample else random.sample(keys, sample)
        sizes = [int(r.memory_usage(k, samples=0) or 0) for k in picked]
        out[kind] = sum(sizes) / len(picked) * len(keys)
    return out


def redis_memory(ctx: Ctx) -> dict[str, Any]:
    r = ctx.redis()
    name = unique("bm")
    app = make_app(name, ctx.url)
    n, chunk = ctx.n, ctx.args.chunk
    calls: list[tuple[str, tuple[()], dict[str, object]]] = [("noop", (), {})] * n
    scale = 100_000 / n
    with app_keys(ctx, name):
        app.add_tasks(calls[:1])  # creates the streams; their fixed cost is not per task
        fixed = app_key_memory(r, name)
        before = int(r.info("memory")["used_memory"])
        for i in range(0, n, chunk):
            app.add_tasks(calls[i:i + chunk])
        used = int(r.info("memory")["used_memory"]) - before
        after = app_key_memory(r, name)
        # the same tasks drained by a worker: what stays is the records and indexes, until result_ttl
        with WorkerPool(ctx, name, 1, concurrency=ctx.args.concurrency, label="memory-results"):
            if not wait_finished_count(r, name, n + 1, 120 + n / 200):
                raise RuntimeError(f"memory: {n} tasks were not drained in time")
            time.sleep(0.5)  # the last settle's stream trim
        stored_used = int(r.info("memory")["used_memory"]) - before
        stored = app_key_memory(r, name)
    by_kind = {k: (v - fixed.get(k, 0.0)) * scale / MIB for k, v in after.items()}
    stored_kind = {k: (v - fixed.get(k, 0.0)) * scale / MIB for k, v in stored.items()}
    return {"used_memory": used * scale / MIB, "keys": sum(by_kind.values()), "by_kind": by_kind,
            "per_task_bytes": sum(by_kind.values()) * MIB / 100_000,
            "stored_used_memory": stored_used * scale / MIB, "stored_keys": sum(stored_kind.values()),
            "stored_by_kind": stored_kind, "per_result_bytes": sum(stored_kind.values()) * MIB / 100_000}


def run(ctx: Ctx) -> dict[str, Any]:
    ctx.begin("memory", 2)
    ctx.step("memory: worker RSS")
    rss = worker_rss(ctx)
    ctx.step("memory: Redis per 100k queued")
    mem = redis_memory(ctx)
    ctx.end()
    rows = [
        {"case": "worker RSS at start", "MiB": rss["start"]},
        {"case": "worker RSS idle (after warm-up)", "MiB": rss["idle"]},
        {"case": f"worker RSS peak during a drain of {ctx.n:,} tasks", "MiB": rss["peak"]},
        {"case": "worker RSS after that drain", "MiB": rss["after"]},
        {"case": "supervisor RSS", "MiB": rss["supervisor"]},
        {"case": "Redis used_memory delta per 100k queued tasks", "MiB": mem["used_memory"]},
        {"case": "Redis keys of the app (MEMORY USAGE) per 100k queued tasks", "MiB": mem["keys"]},
        *({"case": f"  of which {KINDS.get(kind, kind)} per 100k", "MiB": mib}
          for kind, mib in sorted(mem["by_kind"].items(), key=lambda kv: -kv[1]) if abs(mib) >= 0.01),
        {"case": "Redis used_memory delta per 100k stored results (drained, within result_ttl)",
         "MiB": mem["stored_used_memory"]},
        {"case": "Redis keys of the app (MEMORY USAGE) per 100k stored results", "MiB": mem["stored_keys"]},
        *({"case": f"  of which {KINDS.get(kind, kind)} per 100k", "MiB": mib}
          for kind, mib in sorted(mem["stored_by_kind"].items(), key=lambda kv: -kv[1]) if abs(mib) >= 0.01),
    ]
    return {
        "params": {"n": ctx.n, "processes": 1},
        "rows": rows,
        "notes": [f"about {mem['per_task_bytes']:.0f} bytes of keys per queued no-op task and "
                  f"{mem['per_result_bytes']:.0f} per stored result (record and indexes); used_memory counts "
                  "the whole server (allocator slack, other clients of a shared Redis) and moves in steps.",
                  f"RSS drain ran at {rss['rate']:,.0f} tasks/s."],
        "headline": {"rss_idle_mib": rss["idle"], "rss_peak_mib": rss["peak"],
                     "redis_mib_per_100k": mem["used_memory"],
                     "redis_keys_mib_per_100k": mem["keys"], "redis_keys_by_kind": mem["by_kind"],
                     "redis_mib_per_100k_results": mem["stored_used_memory"],
                     "redis_keys_mib_per_100k_results": mem["stored_keys"],
                     "redis_result_keys_by_kind": mem["stored_by_kind"]},
    }
