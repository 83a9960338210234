"""``python -m qtasks_fast.benchmarks`` (also ``qtasks-fast bench ...``): run the suites and write the results.

Each suite writes ``<suite>.json`` and ``<suite>.md`` (and a PNG when matplotlib is
installed) under ``--out``; ``summary.md``/``summary.json`` put every qtasks_fast
number next to the raw-Redis ceiling measured in the same run, with PASS/MISS
against the targets.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qtasks_fast.benchmarks import summary
from qtasks_fast.benchmarks.common import (
    DEFAULT_REDIS_URL,
    Ctx,
    PrivateRedis,
    machine_info,
    redis_info,
    rich_table,
    run_meta,
    versions,
    write_suite,
)

#: run order: the ceiling first, so every later table can show its ratio to it
SUITES = ("ceiling", "drain", "scaling", "enqueue", "sqlite", "pg", "latency", "dispatch", "io", "io-redis", "cpu",
          "memory", "core", "middleware", "query", "web", "grpc", "peers")
DEFAULT_SUITES = tuple(s for s in SUITES if s not in ("middleware", "query", "web", "grpc", "peers", "pg",
                                                       "scaling"))
DESCRIPTIONS = {
    "ceiling": "raw redis-py+hiredis streams: pipelined XADD, XREADGROUP+XACK drain, round trip",
    "drain": "N no-op tasks through 1/2/4 worker processes; payload sizes; index_results on/off",
    "scaling": "no-op drain with 1/2/4 worker processes (--processes) over 1 and 2 queues, Redis CPU per task",
    "enqueue": "add_task one by one, add_tasks in bulk, async add_task with asyncio.gather",
    "sqlite": "embedded SQLite (the default broker): bulk enqueue, drain through 1/2/4 worker processes",
    "pg": "PostgreSQL (postgresql://, $QTASKS_BENCH_PG_URL): bulk enqueue, drain through worker processes, idle "
          "pickup p50/p99 (LISTEN/NOTIFY)",
    "latency": "enqueue -> result visible, p50/p99/p99.9 idle and under load; idle worker CPU%",
    "dispatch": "enqueue -> body starts and -> result back, idle, alternated with raw XREADGROUP/BRPOP/echo trips",
    "io": "async tasks sleeping 10 ms at high concurrency vs the theoretical rate",
    "io-redis": "tasks awaiting one command on a shared redis.asyncio client vs that command loop with no queue",
    "cpu": "CPU-bound inline task: 1 vs 2 processes, --pin-cpus vs not",
    "memory": "worker RSS idle and under load; Redis memory per 100k queued tasks",
    "core": "compiled dispatch core vs the same code as pure Python: ns and instructions per task",
    "middleware": "no-op drain with 0 vs 3 no-op middlewares, same pool: the hooked path's cost as a ratio",
    "query": "1,000,000 finished records in a private Redis: filtered pages, page 2, counts p50/p99; memory",
    "web": "the query suite's records served by create_app under uvicorn: GET /api/v1/tasks p50/p95/p99",
    "grpc": "the gRPC gateway vs the in-process Python API: AddTask one by one and concurrent, AddTasks, "
            "WatchTasks to 10 watchers during a drain (needs the grpc extra)",
    "peers": "comparison with other Python task queues (needs the bench-peers extra)",
}


def build_parser(prog: str = "python -m qtasks_fast.benchmarks") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", "-s", default="default",
                   help="comma-separated suites, 'default' (all but peers) or 'all'; see --list")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--quick", action="store_true", help="smoke mode for CI: tiny N, one repeat (< 90 s in all)")
    p.add_argument("--n", type=int, default=None, help="tasks per measurement (default 20000; --quick 1000)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per measurement, median taken (default 3)")
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default ./bench-<timestamp> in the current directory)")
    p.add_argument("--redis-url", default=None,
                   help=f"Redis for every suite (env QTASKS_BENCH_REDIS_URL; default {DEFAULT_REDIS_URL}); "
                        "keys are per-run app names, deleted afterwards; nothing is flushed")
    p.add_argument("--private-redis", action="store_true",
                   help="start a redis-server of our own on a free port (no persistence) for the run, so other "
                        "clients of the shared Redis do not skew the Redis CPU and command-stats columns")
    p.add_argument("--processes", default="1,2,4", help="worker process counts for the drain suite")
    p.add_argument("--concurrency", type=int, default=None,
                   help="worker --concurrency for drain/latency/memory (default: the product's)")
    p.add_argument("--chunk", type=int, default=1000, help="tasks per bulk enqueue call / XADD pipeline")
    p.add_argument("--ceiling-consumers", type=int, default=2, help="raw consumer processes in the ceiling suite")
    p.add_argument("--latency-samples", type=int, default=None, help="round trips per latency case (default 2000)")
    p.add_argument("--load-rate", type=int, default=None,
                   help="background tasks/s for latency under load (default: a third of the 1-process drain "
                        "rate when the drain suite ran, else 2000)")
    p.add_argument("--io-concurrency", type=int, default=50,
                   help="worker --concurrency of the io suite's target row (2 processes x this x 100/s)")
    p.add_argument("--async-concurrency", type=int, default=64,
                   help="coroutines in flight for the async enqueue case (each holds a connection while its "
                        "call runs; beyond the connection cap of 128 calls wait for a free one)")
    p.add_argument("--resummarize", type=Path, metavar="DIR",
                   help="rebuild summary.md/summary.json of a finished run from its <suite>.json files and exit "
                        "(after a change to the targets table; nothing is measured)")
    p.add_argument("--profile", action="store_true",
                   help="py-spy a worker process during an extra 1-process drain and summarize its hottest functions")
    p.add_argument("--no-callgrind", action="store_true", help="skip instruction counts in the core suite")
    p.add_argument("--query-records", type=int, default=1_000_000,
                   help="finished records the query suite stores in its private Redis (--quick: 20000)")
    p.add_argument("--query-samples", type=int, default=200, help="timed calls per case of the query suite")
    return p


def resolve(args: argparse.Namespace) -> None:
    if args.n is None:
        args.n = 1000 if args.quick else 20_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.latency_samples is None:
        args.latency_samples = 100 if args.quick else 2000
    if args.redis_url is None:
        args.redis_url = os.environ.get("QTASKS_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    if args.out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out = Path.cwd() / f"bench-{stamp}"  # never inside the installed package
    try:
        args.process_counts = [int(x) for x in str(args.processes).split(",") if x.strip()]
    except ValueError:
        args.process_counts = []
    if not args.process_counts or min(args.process_counts) < 1:
        raise ValueError(f"argument --processes: {args.processes!r} is not a list of process counts such as 1,2,4")
    for flag, value in (("--n", args.n), ("--repeats", args.repeats), ("--chunk", args.chunk),
                        ("--latency-samples", args.latency_samples), ("--query-records", args.query_records),
                        ("--query-samples", args.query_samples)):
        if value < 1:
            raise ValueError(f"argument {flag}: must be at least 1, not {value}")


def select(spec: str) -> list[str]:
    names: list[str] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if part == "default":
            names += DEFAULT_SUITES
        elif part == "all":
            names += SUITES
        elif part in SUITES:
            names.append(part)
        else:
            raise ValueError(f"argument --suite: unknown suite {part!r}; choose from {', '.join(SUITES)}, default, all")
    return [s for s in SUITES if s in names]


def resummarize(out: Path) -> int:
    """summary.md/json of the run in ``out`` again, from what its suites wrote (run.json, <suite>.json)."""
    meta = json.loads((out / "run.json").read_text())
    results = {name: json.loads((out / f"{name}.json").read_text())
               for name in meta.get("suites", SUITES) if (out / f"{name}.json").exists()}
    failed = [name for name in meta.get("suites", ()) if (out / f"{name}.error.txt").exists()]
    path = summary.write(out, summary.targets(results), results, meta, failed)
    print(f"rewrote {path}")
    return 0


def run_peers(ctx: Ctx) -> dict[str, Any] | None:
    try:
        peers = importlib.import_module("qtasks_fast.benchmarks.peers")
    except ImportError as exc:
        ctx.console.print(f"[yellow]peers: skipped — the bench-peers extra is missing "
                          f"(pip install -e '.[bench-peers]'): {exc}[/yellow]")
        return None
    rows = peers.run(ctx.args, ctx.progress)
    return {"rows": list(rows), "notes": [], "params": {}}


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the suites; ``prog`` names the command in usage lines (``qtasks-fast bench`` from the CLI). Bad
    input is argparse's usage and one line, exit 2, before anything is measured or written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``qtasks-fast bench -- --quick``: argparse REMAINDER keeps the separator
        argv = argv[1:]
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in SUITES:
            print(f"{name:8} {DESCRIPTIONS[name]}{'' if name in DEFAULT_SUITES else '  (not in default)'}")
        return 0
    if args.resummarize is not None:
        if not (args.resummarize / "run.json").is_file():
            parser.error(f"argument --resummarize: {str(args.resummarize)!r} holds no run.json: name a folder a "
                         "run wrote (./bench-<timestamp>)")
        return resummarize(args.resummarize)
    try:
        resolve(args)
        suites = select(args.suite)
    except ValueError as exc:
        parser.error(str(exc))
    console = Console() if sys.stdout.isatty() else Console(width=160)
    out: Path = args.out
    private = None
    if args.private_redis:
        private = PrivateRedis(Path(tempfile.mkdtemp(prefix="qtasks-bench-redis-")))
        try:
            args.redis_url = private.start()
        except (RuntimeError, OSError) as exc:
            console.print(f"[red]--private-redis: {exc}[/red]")
            return 2
    try:
        return _run(args, argv, suites, console, out)
    finally:
        if private is not None:
            private.stop()


def _run(args: argparse.Namespace, argv: list[str], suites: list[str], console: Console, out: Path) -> int:
    try:
        rinfo = redis_info(args.redis_url)
    except Exception as exc:  # noqa: BLE001
        from rich.markup import escape

        from qtasks_fast.url import redact

        console.print(f"[red]cannot reach Redis at {escape(redact(args.redis_url))}: {escape(str(exc))}[/red]")
        return 2
    rinfo["private"] = bool(args.private_redis)
    out.mkdir(parents=True, exist_ok=True)  # only now: a run that cannot start leaves no empty folder behind
    meta = {**run_meta(argv), "machine": machine_info(), "versions": versions(), "redis": rinfo,
            "quick": args.quick, "n": args.n, "repeats": args.repeats, "suites": suites}
    (out / "run.json").write_text(json.dumps(meta, indent=2, default=str))
    console.print(f"qtasks_fast benchmarks → {out}  (suites: {', '.join(suites)}; n={args.n}, "
                  f"repeats={args.repeats}; Redis {rinfo['version']}, {rinfo['persistence']})")
    failed: list[str] = []
    started = time.monotonic()
    progress = Progress(TextColumn("{task.description:<44}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    ctx = Ctx(args=args, out=out, console=console, progress=progress)
    args.ctx_results = ctx.results  # for qtasks_fast.benchmarks.peers, which gets only (args, progress)
    with progress:
        for name in suites:
            t0 = time.monotonic()
            try:
                if name == "peers":
                    result = run_peers(ctx)
                    if result is None:
                        continue
                else:
                    result = importlib.import_module(f"{__package__}.{name.replace('-', '')}").run(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken suite must not hide the others
                ctx.end()
                failed.append(name)
                (out / f"{name}.error.txt").write_text(traceback.format_exc())
                progress.console.print(f"[red]{name}: FAILED: {type(exc).__name__}: {exc} "
                                       f"(traceback in {out / (name + '.error.txt')})[/red]")
                continue
            result["seconds"] = round(time.monotonic() - t0, 1)
            result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
            ctx.results[name] = result
            write_suite(out, name, result, meta)
            progress.console.print(rich_table(f"{name} ({result['seconds']} s)", result.get("rows", [])))
            for note in result.get("notes", []):
                progress.console.print(f"  [dim]- {note}[/dim]")
    rows = summary.targets(ctx.results)
    summary_md = summary.write(out, rows, ctx.results, meta, failed)
    console.print(rich_table("targets (each qtasks_fast number vs the raw-Redis ceiling of this run)", rows))
    console.print(f"total {time.monotonic() - started:.0f} s; results in {out} (summary: {summary_md})")
    if failed:
        console.print(f"[red]failed suites: {', '.join(failed)}[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
