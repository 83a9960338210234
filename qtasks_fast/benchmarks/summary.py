"""The targets table: each qtasks_fast headline as a ratio of the ceiling measured in the same run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qtasks_fast.benchmarks.common import fmt, markdown_table, pct, ratio

#: (name, goal text, minimum ratio or None, maximum ratio or None)
DRAIN_GOAL, ENQUEUE_GOAL, LATENCY_GOAL, IO_GOAL, IDLE_CPU_GOAL = 0.60, 0.70, 1.5, 0.90, 1.0
#: issue 16: enqueue -> body starts within 1.2x the raw XADD -> blocked XREADGROUP, and below the BRPOP reference
DISPATCH_GOAL = 1.2
#: drain rate as a multiple of the best peer's (peers suite, same run)
PEER_GOAL = 10.0


def ceiling_value(results: dict[str, dict[str, Any]], key: str) -> float | None:
    value = results.get("ceiling", {}).get("headline", {}).get(key)
    return float(value) if value else None


def _row(target: str, value: float | None, unit: str, ref: float | None, ref_name: str, r: float | None,
         goal: str, ok: bool | None) -> dict[str, Any]:
    return {"target": target, "qtasks_fast": f"{fmt(value)} {unit}" if value is not None else "-",
            "reference": f"{fmt(ref)} {unit} ({ref_name})" if ref is not None else f"- ({ref_name})",
            "ratio": "n/a" if r is None else (f"{r:.2f}×" if unit == "µs" else pct(r)), "goal": goal,
            "status": "n/a" if ok is None else ("PASS" if ok else "MISS")}


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    drain = results.get("drain", {}).get("headline")
    if drain:
        # paired: the raw drain ran in the drain suite's own rotation (ratio = median of per-repeat ratios)
        paired = drain.get("paired_ratio")
        value = drain.get("rate_vs_ceiling")
        ref = drain.get("paired_raw_rate") if paired else ceiling_value(results, "drain_rate")
        r = paired or ratio(value, ref)
        rows.append(_row(f"drain, {drain.get('vs_ceiling_processes')} processes", value, "tasks/s", ref,
                         "raw XREADGROUP+XACK drain" + (", same rotation" if paired else ""), r,
                         f"≥ {DRAIN_GOAL:.0%} of ceiling",
                         None if r is None else r >= DRAIN_GOAL))
        mine, raw = drain.get("redis_us_per_task"), ceiling_value(results, "drain_redis_us_per_task")
        if mine and raw:
            rows.append({"target": "redis-server CPU per drained task (diagnostic)", "qtasks_fast": f"{mine:.1f} µs",
                         "reference": f"{raw:.1f} µs (raw drain)", "ratio": f"{mine / raw:.1f}×", "goal": "-",
                         "status": "info"})
    enq = results.get("enqueue", {}).get("headline")
    if enq:
        paired = enq.get("bulk_paired_ratio")  # raw XADD in the enqueue suite's rotation: median of pair ratios
        value = enq.get("bulk_rate")
        ref = enq.get("raw_xadd_rate") if paired else ceiling_value(results, "xadd_rate")
        r = paired or ratio(value, ref)
        rows.append(_row("bulk enqueue (add_tasks)", value, "tasks/s", ref,
                         "raw pipelined XADD" + (", same rotation" if paired else ""), r,
                         f"≥ {ENQUEUE_GOAL:.0%} of ceiling", None if r is None else r >= ENQUEUE_GOAL))
    lat = results.get("latency", {}).get("headline")
    if lat:
        # the raw round trips the latency suite alternated with its own, else the ceiling suite's
        paired = lat.get("raw_rt_p50_us")
        value, ref = lat.get("p50_idle_us"), paired or ceiling_value(results, "rt_p50_us")
        r = ratio(value, ref)
        rows.append(_row("latency p50, idle", value, "µs", ref,
                         "raw round trip p50, alternated" if paired else "raw round trip p50", r,
                         f"≤ {LATENCY_GOAL}× ceiling", None if r is None else r <= LATENCY_GOAL))
        cpu = lat.get("idle_cpu_pct")
        if cpu is not None:
            rows.append({"target": "idle worker CPU", "qtasks_fast": f"{cpu:.2f} %", "reference": "-",
                         "ratio": "-", "goal": f"≤ {IDLE_CPU_GOAL:.0f} % (~0)",
                         "status": "PASS" if cpu <= IDLE_CPU_GOAL else "MISS"})
    dispatch = results.get("dispatch", {}).get("headline")
    if dispatch:
        r = dispatch.get("start_over_raw_streams")
        rows.append(_row("enqueue -> body starts p50, idle", dispatch.get("start_p50_us"), "µs",
                         dispatch.get("raw_streams_p50_us"), "XADD -> blocked XREADGROUP p50, alternated", r,
                         f"≤ {DISPATCH_GOAL}× raw and < BRPOP",
                         None if r is None else r <= DISPATCH_GOAL and dispatch.get("start_over_raw_list", 9) < 1))
    peer_rows = [r for r in results.get("peers", {}).get("rows", [])
                 if r.get("workload") == "drain" and isinstance(r.get("rate"), (int, float)) and r["rate"] > 0]
    if drain and peer_rows:
        best = max(peer_rows, key=lambda r: r["rate"])
        value = drain.get("rate_vs_ceiling")
        r = ratio(value, best["rate"])
        rows.append({"target": f"drain, {drain.get('vs_ceiling_processes')} processes, vs the best peer",
                     "qtasks_fast": f"{fmt(value)} tasks/s",
                     "reference": f"{fmt(best['rate'])} tasks/s ({best['peer']} {best.get('version', '')}, same run)",
                     "ratio": "n/a" if r is None else f"{r:.1f}×", "goal": f"≥ {PEER_GOAL:.0f}× best peer",
                     "status": "n/a" if r is None else ("PASS" if r >= PEER_GOAL else "MISS")})
    io = results.get("io", {}).get("headline")
    if io:
        r = io.get("worst_ratio")
        rows.append(_row(f"io sleep 10 ms ({io.get('worst_case')})", io.get("worst_rate"), "tasks/s",
                         io.get("worst_theoretical"), "theoretical", r, f"≥ {IO_GOAL:.0%} of theoretical",
                         None if r is None else r >= IO_GOAL))
    ior = results.get("io-redis", {}).get("headline")
    if ior:
        r = ior.get("ratio")
        rows.append(_row("io-redis (one command per task, 2 processes)", ior.get("rate"), "tasks/s",
                         ior.get("loop_rate"), "the same command loop, no queue, alternated", r,
                         "≥ 80% of the loop", None if r is None else r >= 0.80))
    return rows


def write(out: Path, rows: list[dict[str, Any]], results: dict[str, dict[str, Any]], meta: dict[str, Any],
          failed: list[str]) -> Path:
    m, v, rd = meta["machine"], meta["versions"], meta["redis"]
    lines = [
        "# qtasks_fast benchmarks\n",
        f"Command: `{meta['command']}`  ",
        f"Started: {meta['started_at']}; quick={meta['quick']}, n={meta['n']}, repeats={meta['repeats']}  ",
        f"Machine: {m['cpu_model']}, {m['cores_logical']} logical cores ({m['cores_physical']} physical), "
        f"{m['memory_gib']} GiB, load average at start {m['load_avg_at_start']}  ",
        f"Versions: Python {v['python']}, qtasks_fast {v['qtasks_fast']} (compiled core: {v['compiled_core']}), "
        f"redis-py {v['redis_py']}, hiredis {v['hiredis']}, msgspec {v['msgspec']}, uvloop {v['uvloop']}  ",
        f"Redis {rd['version']} at {rd['url']}{' (private redis-server for this run)' if rd.get('private') else ''}: "
        f"{rd['persistence']} (appendonly={rd.get('appendonly')}, save='{rd.get('save')}')  ",
        f"Product tree: {meta['git'].get('tree')} at commit {meta['git'].get('commit')}"
        + (f", modified: {', '.join(meta['git']['product_files_modified'])}"
           if meta["git"].get("product_files_modified") else ", no uncommitted product changes") + "\n",
        "## Targets\n",
        markdown_table(rows),
    ]
    if failed:
        lines.append(f"**Failed suites:** {', '.join(failed)} (see `<suite>.error.txt`)\n")
    for name in results:
        md = out / f"{name}.md"
        if md.exists():
            lines.append(md.read_text())
    path = out / "summary.md"
    path.write_text("\n".join(lines))
    headlines = {name: res.get("headline", {}) for name, res in results.items()}
    (out / "summary.json").write_text(json.dumps({"targets": rows, "headlines": headlines, "failed": failed,
                                                  "meta": meta}, indent=2, default=str))
    return path
