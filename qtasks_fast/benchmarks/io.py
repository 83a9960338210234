"""io: async tasks that sleep 10 ms, at high per-process concurrency, vs the theoretical rate.

Theoretical: ``min(concurrency × processes, N)`` tasks finish every 10 ms, so N tasks take
``ceil(N / (concurrency × processes)) × 10 ms``. A row at a lower concurrency shows
whether a miss comes from overlapping I/O or from raw dispatch throughput (see the
noop drain rate of the same process count).
"""

from __future__ import annotations

import math
from typing import Any

from qtasks_fast.benchmarks.common import Ctx, median
from qtasks_fast.benchmarks.drain import Case, PoolSpec, middle, run_cases

SLEEP = 0.010


def theoretical(n: int, concurrency: int, processes: int) -> float:
    return n / (math.ceil(n / (concurrency * processes)) * SLEEP)


def run(ctx: Ctx) -> dict[str, Any]:
    n, reps = ctx.n, ctx.repeats
    high = ctx.args.io_concurrency
    # the target row: 2 processes at --io-concurrency, whose theoretical rate the no-op drain can
    # carry; a row at 256 shows what happens when concurrency asks for more than dispatch can move
    configs = [(1, high)] if ctx.quick else [(1, high), (2, high), (2, 256)]
    pools = {f"p{p}c{c}": PoolSpec(p, f"io-p{p}-c{c}", concurrency=c) for p, c in configs}
    cases = [Case(f"p{p}c{c}", f"{p} process{'es' if p > 1 else ''} × concurrency {c}", ("sleep10ms", (), {}), n)
             for p, c in configs]
    ctx.begin("io", len(cases) * reps)
    drain_by_p = ctx.results.get("drain", {}).get("headline", {}).get("rate_by_processes", {})
    rows = []
    for (processes, conc), case, runs in zip(configs, cases, run_cases(ctx, pools, cases), strict=True):
        mid = middle(runs)
        theo = theoretical(n, conc, processes)
        noop = drain_by_p.get(processes)
        rows.append({"case": case.name, "processes": processes, "concurrency": conc, "n": n,
                     "tasks/s": median(x["rate"] for x in runs), "runs": [round(x["rate"]) for x in runs],
                     "theoretical": theo, "% theoretical": f"{mid['rate'] / theo:.0%}",
                     "noop drain tasks/s": noop, "workers CPU%": mid["workers"], "redis CPU%": mid["redis"],
                     "_ratio": median(x["rate"] for x in runs) / theo,
                     "_main": conc == high and processes == max(p for p, _ in configs)})
    ctx.end()
    main = [r for r in rows if r["_main"]]
    worst = min(main, key=lambda r: r["_ratio"])
    notes = ["theoretical = N / (ceil(N / (concurrency × processes)) × 10 ms).",
             "the target is read on the row with the most processes at --io-concurrency."]
    if any(r["noop drain tasks/s"] and r["theoretical"] > r["noop drain tasks/s"] for r in rows):
        notes.append("where theoretical exceeds the no-op drain rate of the same process count, dispatch "
                     "throughput, not I/O overlap, is the limit.")
    return {
        "params": {"n": n, "repeats": reps, "sleep_ms": SLEEP * 1000},
        "rows": rows,
        "notes": notes,
        "headline": {"worst_ratio": worst["_ratio"], "worst_case": worst["case"], "worst_rate": worst["tasks/s"],
                     "worst_theoretical": worst["theoretical"],
                     "by_case": {r["case"]: {"rate": r["tasks/s"], "theoretical": r["theoretical"]} for r in rows}},
    }
