"""middleware: what three no-op middlewares cost a no-op task, as a drain rate next to the plain one.

One worker pool (``--processes``' smallest count, so the worker is the bottleneck and a per-task
cost shows) runs both cases, interleaved repeat by repeat: ``noop`` (no middleware: the
executor's plain path) and ``noop_mw3`` (the same task with three middlewares whose
``before_execute`` and ``after_execute`` do nothing: the hooked path). Both tasks live in the
same app, so the producer side is identical. The ratio is the headline.

The workers import this module (``-A qtasks_fast.benchmarks.middleware:app``): it registers the
benchmark tasks of :mod:`qtasks_fast.benchmarks.apps` plus ``noop_mw3``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.benchmarks.apps import register
from qtasks_fast.benchmarks.common import Ctx, WorkerPool, app_keys, unique
from qtasks_fast.benchmarks.drain import Case, row_of, run_once, warm_up
from qtasks_fast.middleware import Middleware


class NoOp(Middleware):
    """Overrides the worker hooks (so they are called) and does nothing in them."""

    def before_execute(self, ctx: Any) -> None:
        return None

    def after_execute(self, ctx: Any, status: str, result: Any) -> None:
        return None


def make_app(name: str, url: str) -> Any:
    app = register(QueueTasks(name, broker_url=url))

    @app.task(name="noop_mw3", middlewares_before=[NoOp, NoOp, NoOp])
    async def noop_mw3() -> None:
        return None

    return app


app = make_app(os.environ.get("QTASKS_BENCH_APP", "bench"),
               os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/9"))


class MiddlewarePool(WorkerPool):
    """A worker pool of this module's app instead of ``qtasks_fast.benchmarks.apps:app``."""

    def command(self) -> list[str]:
        cmd = super().command()
        cmd[cmd.index("qtasks_fast.benchmarks.apps:app")] = "qtasks_fast.benchmarks.middleware:app"
        return cmd


def run(ctx: Ctx) -> dict[str, Any]:
    n = ctx.n
    processes = max(1, min(ctx.args.process_counts))
    cases = [Case("mw", "noop, 0 middlewares", ("noop", (), {}), n),
             Case("mw", "noop, 3 no-op middlewares", ("noop_mw3", (), {}), n)]
    ctx.begin("middleware", len(cases) * ctx.repeats)
    runs: list[list[dict[str, Any]]] = [[] for _ in cases]
    with contextlib.ExitStack() as stack:
        name = unique("bm")
        producer = make_app(name, ctx.url)
        stack.enter_context(app_keys(ctx, name))
        pool = stack.enter_context(MiddlewarePool(ctx, name, processes, concurrency=ctx.args.concurrency,
                                                  label=f"middleware-p{processes}"))
        warm_up(ctx, producer, pool)
        run_once(ctx, producer, pool, min(500, n), ("noop_mw3", (), {}))  # warm the hooked path too
        for rep in range(ctx.repeats):
            for i, case in enumerate(cases):
                ctx.step(f"middleware: {case.name} (run {rep + 1})")
                runs[i].append(run_once(ctx, producer, pool, case.n, case.call))
    ctx.end()
    rows = [row_of(c, processes, r) for c, r in zip(cases, runs, strict=True)]
    plain, hooked = rows[0]["tasks/s"], rows[1]["tasks/s"]
    ratio = hooked / plain if plain else None
    for row in rows:
        row["vs 0 middlewares"] = f"{row['tasks/s'] / plain:.0%}" if plain else "n/a"
    us = {k: rows[1].get(k, 0) - rows[0].get(k, 0) for k in ("workers µs/task",) if k in rows[0]}
    notes = [f"3 no-op middlewares (before_execute + after_execute each) run at {ratio:.0%} of the plain no-op "
             f"drain rate ({hooked:,.0f} vs {plain:,.0f} tasks/s, {processes} worker process"
             f"{'es' if processes > 1 else ''}, median of {ctx.repeats})." if ratio else "no plain rate measured",
             "A task without middlewares, event handlers or injected parameters runs the executor's plain path "
             "(one flag check); the other row is the hooked path with six hook calls per task."]
    if us:
        notes.append(f"worker CPU per task with the three middlewares: {us['workers µs/task']:+.1f} µs "
                     "(meaningful only at full N: --quick runs are too short).")
    return {"params": {"n": n, "repeats": ctx.repeats, "processes": processes,
                       "concurrency": ctx.args.concurrency or "default"},
            "rows": rows, "notes": notes,
            "headline": {"rate_plain": plain, "rate_mw3": hooked, "ratio": ratio}}
