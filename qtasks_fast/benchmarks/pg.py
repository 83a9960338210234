"""pg: the PostgreSQL backend (``postgresql://``) — bulk enqueue, drain through real workers, idle pickup latency.

* bulk enqueue: ``app.add_tasks`` in chunks of ``--chunk``, no worker running (a chunk of 512 or more: its
  messages by binary COPY, then the feed statement, in one transaction; smaller: one multi-row statement); once
  more, last, with ``--stored`` finished records of another app in the table (``enqueue_rate_stored``), as a
  deployment keeping a day of results has: what a per-task lookup of ``records`` would cost shows there, not in
  the nearly empty table of the first; and with two ``add_tasks`` in flight (the
  async client, two coroutines each sending half the chunks: ``enqueue_rate_inflight2``; run last, after the
  stored records, so its undrained messages change nothing measured before it), where one chunk's server work and
  commit flush overlap the other's Python (one call is one transaction, so a single caller's chunks cannot
  overlap: each call returns after its commit);
* drain: a supervisor (``python -m qtasks_fast ... run --processes P``) started and warmed up before the clock;
  N tasks enqueued in bulk while it runs, tasks/s from the first enqueue to the newest record's ``updated``
  once no message is left (every one must be ``success``);
* idle pickup: one task at a time to an idle 1-process pool, enqueue to its ``process`` mark (``started``,
  written by the worker's claim; read from the view ``tasks``, as every count here: since schema 5 a task has no
  record until it ends) — the LISTEN/NOTIFY wake-up, p50/p99 over ``--pickups`` tasks.

Everything runs in a schema of its own (``qtf_bench_<random>``, dropped afterwards) of the server at
``--pg-url`` / ``$QTASKS_BENCH_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``). Targets
(issue 15): drain with 2 processes >= 20,000/s, bulk enqueue >= 100,000/s, idle pickup p50 < 10 ms.
Standalone: ``python -m qtasks_fast.benchmarks.pg --out DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from qtasks_fast.benchmarks.sqlite import APP_MODULE, APP_SOURCE, WARM_UP, Pool, _cpu, _enqueue

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGETS = {"drain_p2": 20_000.0, "enqueue": 100_000.0, "pickup_p50_ms": 10.0}
#: finished records in the table for the last bulk enqueue (``enqueue_rate_stored``)
STORED = 200_000


class PgPool(Pool):
    """The SQLite suite's worker pool (a supervisor in its own process group), on a PostgreSQL URL."""

    def __init__(self, tmp: Path, url: str, name: str, processes: int) -> None:
        super().__init__(tmp, Path(os.devnull), name, processes)
        self.url = url

    def __enter__(self) -> PgPool:
        env = {**os.environ, "QTASKS_BENCH_APP": self.name, "QTASKS_BROKER_URL": self.url, "QTASKS_LOG_LEVEL": "INFO",
               "PYTHONPATH": os.pathsep.join(p for p in (str(self.tmp), os.environ.get("PYTHONPATH", "")) if p)}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "qtasks_fast", "-A", f"{APP_MODULE}:app", "run", "--processes",
                 str(self.processes), "--worker-id", self.worker_id], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            self._wait_ready(60.0)
        except BaseException:
            self.__exit__()
            raise
        return self


def _client(tmp: Path, url: str, name: str) -> Any:
    os.environ["QTASKS_BENCH_APP"], os.environ["QTASKS_BROKER_URL"] = name, url
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    sys.modules.pop(APP_MODULE, None)
    return __import__(APP_MODULE).app


def _sql(dsn: str, sql: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchrow(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def bulk_enqueue(tmp: Path, url: str, n: int, chunk: int) -> dict[str, float]:
    app = _client(tmp, url, f"bench-enqueue-{uuid.uuid4().hex[:6]}")
    _enqueue(app, min(chunk, 10), chunk)  # connect and migrate outside the clock
    me = psutil.Process()
    c0, t0 = _cpu([me]), time.perf_counter()
    _enqueue(app, n, chunk)
    elapsed, cpu = time.perf_counter() - t0, _cpu([me]) - c0
    app.close()
    return {"rate": n / elapsed, "producer_us": cpu * 1e6 / n}


def bulk_enqueue_inflight2(url: str, n: int, chunk: int) -> dict[str, float]:
    """``n`` tasks in chunks of ``chunk`` by the async client, two ``add_tasks`` in flight (two coroutines on one
    app, so two pooled connections): what a producer that does not wait for each chunk's commit gets."""
    from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks

    async def noop() -> None:
        return None

    async def go() -> dict[str, float]:
        app = AsyncQueueTasks(f"bench-enqueue2-{uuid.uuid4().hex[:6]}", broker_url=url)
        app.task(name="noop")(noop)
        calls: list[tuple[str, tuple[()], dict[str, Any]]] = [("noop", (), {})] * chunk
        await app.add_tasks(calls[:10])  # connect and migrate outside the clock

        async def part(tasks: int) -> None:
            for i in range(0, tasks, chunk):
                await app.add_tasks(calls[:min(chunk, tasks - i)])

        half = (n // chunk + 1) // 2 * chunk  # whole chunks to the first, the rest to the second
        me = psutil.Process()
        c0, t0 = _cpu([me]), time.perf_counter()
        await asyncio.gather(part(min(half, n)), part(n - min(half, n)))
        elapsed, cpu = time.perf_counter() - t0, _cpu([me]) - c0
        await app.close()
        return {"rate": n / elapsed, "producer_us": cpu * 1e6 / n}

    return asyncio.run(go())


def store_records(dsn: str, schema: str, count: int) -> None:
    """``count`` finished records of an app of their own (``bench-stored``), written by the server in one statement."""
    _sql(dsn, f'INSERT INTO "{schema}".records (uuid, app, queue, task_name, status, envelope, created, updated,'
              " finished, expires_at) SELECT gen_random_uuid()::text, 'bench-stored', 'default', 'noop', 'success',"
              " '\\x80', 1, 1, 1, 9999999999999 FROM generate_series(1, $1::int)", count)
    _sql(dsn, f'VACUUM ANALYZE "{schema}".records')  # no autovacuum of them during the clock


def drain_once(pool: PgPool, app: Any, dsn: str, schema: str, n: int, chunk: int, timeout: float) -> dict[str, float]:
    name = pool.name
    before = _sql(dsn, f'SELECT count(*) FROM "{schema}".tasks WHERE app = $1', name)[0]
    procs = pool.children()
    m0, p0 = _machine(), time.process_time()
    c0, t0 = _cpu(procs), time.time()
    _enqueue(app, n, chunk)
    enqueued, producer = time.time() - t0, time.process_time() - p0
    deadline = time.monotonic() + timeout
    while _sql(dsn, f'SELECT count(*) FROM "{schema}".messages WHERE app = $1', name)[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain of {n} tasks not finished after {timeout}s; see {pool.log}")
        time.sleep(0.02)
    cpu = _cpu(procs) - c0
    busy, ticks = (b - a for a, b in zip(m0, _machine(), strict=True))
    end, done, total = _sql(dsn, f"SELECT max(updated), count(*) FILTER (WHERE status = 'success'), count(*)"
                                 f' FROM "{schema}".tasks WHERE app = $1', name)
    if total != before + n or done != total:
        raise RuntimeError(f"drain of {n} noop tasks ended with {total - before} records, {total - done} not "
                           f"success; see {pool.log}")
    wall = end / 1000 - t0
    return {"rate": n / wall, "worker_us": cpu * 1e6 / n, "producer_us": producer * 1e6 / n,
            "enqueue_share": min(1.0, enqueued / wall), "busy_cores": busy / max(ticks, 1) * (os.cpu_count() or 1)}


def _machine() -> tuple[int, int]:
    """The machine's busy and total CPU ticks so far (``/proc/stat``; none elsewhere: 0 of 1): how much of the cores a
    drain used, the server, the producer and other processes included."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 1
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
    return sum(ticks) - idle, sum(ticks)


def pickups(app: Any, dsn: str, schema: str, count: int) -> list[float]:
    """ms from ``add_task`` to the worker's claim (the record's ``started``), one task at a time, idle between."""
    out = []
    for _ in range(count):
        time.sleep(0.05)  # the worker is idle, blocked on LISTEN
        t0 = time.time()
        task = app.add_task("noop")
        while True:
            # the running task's message, else its record: two primary lookups, planned as cheaply as the one
            # records lookup of schema 4 (the view's plan costs the server ~1 ms, on a new connection per poll)
            row = _sql(dsn, f'SELECT coalesce((SELECT started FROM "{schema}".messages WHERE uuid = $1 LIMIT 1),'
                            f' (SELECT started FROM "{schema}".records WHERE uuid = $1))', str(task.uuid))
            if row is not None and row[0] is not None:
                out.append(row[0] - t0 * 1000)
                break
            time.sleep(0.001)
    return out


def measure(url: str, n: int, repeats: int, chunk: int, processes: Sequence[int], pickup_count: int,
            stored: int = 0) -> dict[str, Any]:
    schema = f"qtf_bench_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    full = f"{url}{sep}schema={schema}"
    runs: dict[str, list[dict[str, float]]] = {"enqueue": [], "enqueue-stored": [], "enqueue-2": [],
                                               **{f"drain-p{p}": [] for p in processes}}
    lat: list[float] = []
    try:
        with tempfile.TemporaryDirectory(prefix="qtasks-bench-pg-") as tmp_name, contextlib.ExitStack() as stack:
            tmp = Path(tmp_name)
            (tmp / f"{APP_MODULE}.py").write_text(APP_SOURCE)
            pools: dict[int, tuple[PgPool, Any]] = {}
            for p in processes:
                app = _client(tmp, full, f"bench-drain-p{p}")
                _enqueue(app, 1, 1)  # the schema exists before the workers start
                pool = stack.enter_context(PgPool(tmp, full, f"bench-drain-p{p}", p))
                drain_once(pool, app, url, schema, WARM_UP, chunk, 120)
                pools[p] = (pool, app)
            for _ in range(repeats):
                runs["enqueue"].append(bulk_enqueue(tmp, full, n, chunk))
                for p, (pool, app) in pools.items():
                    runs[f"drain-p{p}"].append(drain_once(pool, app, url, schema, n, chunk, 120 + n / 100))
            if pickup_count:
                pool, app = pools[min(pools)]
                lat = pickups(app, url, schema, pickup_count)
            if stored:  # last: the drains and pickups above ran on the table as before
                store_records(url, schema, stored)
                for _ in range(repeats):
                    runs["enqueue-stored"].append(bulk_enqueue(tmp, full, n, chunk))
            for _ in range(repeats):  # very last: its messages (never drained) must not grow the tables above
                runs["enqueue-2"].append(bulk_enqueue_inflight2(full, n, chunk))
    finally:
        _sql(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def med(case: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[case])

    rows: list[dict[str, Any]] = [
        {"case": f"bulk enqueue (add_tasks, chunks of {chunk}), no worker", "n": n, "tasks/s": med("enqueue", "rate"),
         "runs": [round(r["rate"]) for r in runs["enqueue"]], "producer µs/task": med("enqueue", "producer_us")},
        {"case": f"bulk enqueue, two add_tasks in flight (async client, chunks of {chunk})", "n": n,
         "tasks/s": med("enqueue-2", "rate"), "runs": [round(r["rate"]) for r in runs["enqueue-2"]],
         "producer µs/task": med("enqueue-2", "producer_us")}]
    if stored:
        rows.append({"case": f"bulk enqueue, {stored:,} finished records stored", "n": n,
                     "tasks/s": med("enqueue-stored", "rate"),
                     "runs": [round(r["rate"]) for r in runs["enqueue-stored"]],
                     "producer µs/task": med("enqueue-stored", "producer_us")})
    rows += [{"case": f"drain, {p} process{'es' if p > 1 else ''} (enqueued while it runs)", "n": n,
              "tasks/s": med(f"drain-p{p}", "rate"), "runs": [round(r["rate"]) for r in runs[f"drain-p{p}"]],
              "workers µs/task": med(f"drain-p{p}", "worker_us"),
              "producer µs/task": med(f"drain-p{p}", "producer_us"),
              "enqueue share of the drain": med(f"drain-p{p}", "enqueue_share"),
              "busy cores": med(f"drain-p{p}", "busy_cores")} for p in processes]
    headline: dict[str, Any] = {
        "enqueue_rate": med("enqueue", "rate"),
        "enqueue_rate_inflight2": med("enqueue-2", "rate"),
        "drain_rate_by_processes": {str(p): med(f"drain-p{p}", "rate") for p in processes},
        "drain_busy_cores_by_processes": {str(p): med(f"drain-p{p}", "busy_cores") for p in processes}}
    if stored:
        headline["enqueue_rate_stored"] = med("enqueue-stored", "rate")
    if lat:
        lat.sort()
        p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rows.append({"case": f"idle pickup (enqueue -> claimed), {len(lat)} tasks", "n": len(lat), "p50 ms": p50,
                     "p99 ms": p99})
        headline["pickup_ms"] = {"p50": p50, "p99": p99}
    return {"params": {"n": n, "repeats": repeats, "chunk": chunk, "processes": list(processes), "url": url,
                       "stored": stored},
            "rows": rows, "headline": headline, "targets": TARGETS,
            "notes": ["A schema of its own on the server, dropped afterwards; workers µs/task is the CPU of every "
                      "worker process over the drain (fetch, run, settle); the server's CPU is not in it."]}


def run(ctx: Any) -> dict[str, Any]:
    """The suite in ``python -m qtasks_fast.benchmarks`` (``--n``, ``--repeats``, ``--chunk``, ``--processes``)."""
    ctx.begin("pg", 1)
    ctx.step("pg: bulk enqueue, drain and idle pickup")
    try:
        url = os.environ.get("QTASKS_BENCH_PG_URL", DEFAULT_URL)
        return measure(url, ctx.n, ctx.repeats, ctx.args.chunk, ctx.args.process_counts, 20 if ctx.quick else 200,
                       STORED // 10 if ctx.quick else STORED)
    finally:
        ctx.end()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.pg", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default=os.environ.get("QTASKS_BENCH_PG_URL", DEFAULT_URL), help="the server")
    p.add_argument("--n", type=int, default=20_000, help="tasks per measurement (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per case, median taken (default %(default)s)")
    p.add_argument("--chunk", type=int, default=1000, help="tasks per add_tasks call (default %(default)s)")
    p.add_argument("--processes", default="2", help="worker process counts of the drain (default 2)")
    p.add_argument("--pickups", type=int, default=200, help="idle pickups timed (default %(default)s)")
    p.add_argument("--stored", type=int, default=STORED,
                   help="finished records stored for the last bulk enqueue (0: skip it; default %(default)s)")
    p.add_argument("--out", type=Path, default=Path.cwd() / "bench-pg", help="results folder")
    args = p.parse_args(argv)
    counts = [int(x) for x in args.processes.split(",") if x.strip().isdigit()]
    if not counts or min(counts) < 1 or min(args.n, args.repeats, args.chunk) < 1:
        p.error("--n, --repeats, --chunk must be at least 1 and --processes a list such as 1,2")
    result = measure(args.pg_url, args.n, args.repeats, args.chunk, counts, args.pickups, max(args.stored, 0))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pg.json").write_text(json.dumps({"suite": "pg", **result}, indent=1))
    for row in result["rows"]:
        print(json.dumps(row, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
