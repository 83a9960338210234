"""cpu: a CPU-bound sync task (``executor="inline"``) with 1 and 2 worker processes, --pin-cpus or not.

"% of linear" compares with the 1-process rate × processes (capped by the logical CPUs,
which producer and redis-server share); "% of 1/call time" with the task timed in this process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from qtasks_fast.benchmarks.apps import CPU_LOOPS, make_app
from qtasks_fast.benchmarks.common import Ctx, median, unique
from qtasks_fast.benchmarks.drain import Case, PoolSpec, middle, run_cases


def seconds_per_call(app: Any) -> float:
    fn = app.tasks["cpu"].func
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            fn(CPU_LOOPS)
        times.append((time.perf_counter() - t) / 10)
    return min(times)


def run(ctx: Ctx) -> dict[str, Any]:
    n = max(50, ctx.n // 20)
    reps = ctx.repeats
    configs: list[tuple[int, bool, int | None]] = [(p, pin, None) for pin in (False, True) for p in (1, 2)]
    if not ctx.quick:
        configs.append((2, False, 1))  # diagnostic: no prefetch beyond the running task
    ctx.begin("cpu", len(configs) * reps)
    probe = make_app(unique("bc"), ctx.url)
    per_call = seconds_per_call(probe)
    cpus = os.cpu_count() or 1
    pools = {}
    cases = []
    for processes, pin, conc in configs:
        label = f"cpu-p{processes}{'-pin' if pin else ''}{f'-c{conc}' if conc else ''}"
        pools[label] = PoolSpec(processes, label, concurrency=conc, pin=pin)
        name = f"{processes} process{'es' if processes > 1 else ''}, {'pinned' if pin else 'not pinned'}"
        cases.append(Case(label, name + (f", --concurrency {conc}" if conc else ""), ("cpu", (), {}), n))
    all_runs = run_cases(ctx, pools, cases)
    rates = {(p, pin): median(x["rate"] for x in runs)
             for (p, pin, conc), runs in zip(configs, all_runs, strict=True) if conc is None}
    rows = []
    for (processes, pin, conc), case, runs in zip(configs, cases, all_runs, strict=True):
        rate = median(x["rate"] for x in runs)
        one = rates.get((1, pin))
        linear = one * min(processes, cpus) if one else None
        rows.append({"case": case.name, "processes": processes, "pin_cpus": pin, "concurrency": conc or "default",
                     "n": n, "tasks/s": rate, "runs": [round(x["rate"]) for x in runs],
                     "% of linear": f"{rate / linear:.0%}" if linear else "-",
                     "% of 1/call time": f"{rate / (min(processes, cpus) / per_call):.0%}",
                     "workers CPU%": middle(runs)["workers"]})
    ctx.end()
    scaling = {pin: rates[(2, pin)] / rates[(1, pin)] for pin in (False, True)}
    notes = [f"one call takes {per_call * 1000:.2f} ms in this process ({CPU_LOOPS:,} loop iterations).",
             f"scaling 1 -> 2 processes: {scaling[False]:.2f}× not pinned, {scaling[True]:.2f}× pinned "
             f"({cpus} logical CPUs, shared with the producer and redis-server)."]
    c1 = next((r for r in rows if r["concurrency"] == 1), None)
    if c1 and rates.get((2, False)):
        notes.append(f"2 processes with --concurrency 1 (one task fetched at a time, a round trip per task): "
                     f"{c1['tasks/s']:,.0f} vs {rates[(2, False)]:,.0f} tasks/s with the default concurrency.")
    return {
        "params": {"n": n, "repeats": reps, "loops": CPU_LOOPS, "ms_per_call": per_call * 1000},
        "rows": rows,
        "notes": notes,
        "headline": {"rates": {f"p{p}{'_pin' if pin else ''}": r for (p, pin), r in rates.items()},
                     "scaling_unpinned": scaling[False], "scaling_pinned": scaling[True],
                     "ms_per_call": per_call * 1000},
    }
