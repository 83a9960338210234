"""sqlite: the embedded SQLite backend (the default broker) — bulk enqueue and drain through real workers.

* bulk enqueue: ``app.add_tasks`` in chunks of ``--chunk`` into a fresh file, no worker running;
* drain: a supervisor (``python -m qtasks_fast ... run --processes P``) on another fresh file, started and
  warmed up before the clock; N tasks enqueued in bulk while it runs, tasks/s from the first enqueue to the
  newest record's ``updated`` once the ``messages`` table is empty (every one must be ``success``).

CPU µs/task (producer for the enqueue, the worker processes for the drain) are steadier than rates on a
shared machine. Self-contained on purpose: this file imports only the product's public client and starts
workers through its CLI (the task module is written into the temporary folder), so
``python -m qtasks_fast.benchmarks.ab --suite sqlite`` runs THIS file with an older revision's interpreter
(see ``ab.STANDALONE``) and compares the SQLite backend before and after a change in one run, even against
a revision that had no such suite. Standalone: ``python -m qtasks_fast.benchmarks.sqlite --out DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

#: the task module the workers and the producer load (written into the run's temporary folder)
APP_MODULE = "qtf_sqlite_bench_app"
APP_SOURCE = '''import os
from qtasks_fast import QueueTasks

app = QueueTasks(os.environ["QTASKS_BENCH_APP"], broker_url=os.environ["QTASKS_BROKER_URL"])


@app.task(name="noop")
async def noop() -> None:
    return None


for _name in ("add", "mul", "echo"):  # more names for the task-list timings
    app.task(name=_name)(noop)
'''
WARM_UP = 200
#: task lists timed by ``--page-records`` (label, TaskFilter fields): what a dashboard asks at scale
PAGES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("status=error", {"status": "error"}), ("status=process", {"status": "process"}),
    ("name=mul", {"task_name": "mul"}), ("name=mul, status=success", {"task_name": "mul", "status": "success"}),
    ("no filter", {}), ("finished in the last minute", {"finished_after": -60.0}),
    ("error_contains='timeout'", {"error_contains": "timeout"}),
    ("worker_id='nosuch' (no match, no index)", {"worker_id": "nosuch"}),
    ("error_contains='zzz-nomatch' (no match)", {"error_contains": "zzz-nomatch"}))


def _cpu(procs: Sequence[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _client(tmp: Path, db: Path, name: str) -> Any:
    """The producer's app, built the way the workers build theirs (same module, same env)."""
    os.environ["QTASKS_BENCH_APP"], os.environ["QTASKS_BROKER_URL"] = name, f"sqlite:///{db}"
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    sys.modules.pop(APP_MODULE, None)
    module = __import__(APP_MODULE)
    return module.app


def _enqueue(app: Any, n: int, chunk: int) -> None:
    calls: list[tuple[str, tuple[()], dict[str, Any]]] = [("noop", (), {})] * min(n, chunk)
    for i in range(0, n, chunk):
        app.add_tasks(calls[:min(chunk, n - i)])


def bulk_enqueue(tmp: Path, n: int, chunk: int) -> dict[str, float]:
    """``n`` tasks in bulk into a fresh file with no worker: tasks/s and producer CPU µs/task."""
    db = tmp / f"enqueue-{uuid.uuid4().hex[:8]}.db"
    app = _client(tmp, db, "bench-enqueue")
    _enqueue(app, min(chunk, 10), chunk)  # open the file and create the schema outside the clock
    me = psutil.Process()
    c0, t0 = _cpu([me]), time.perf_counter()
    _enqueue(app, n, chunk)
    elapsed, cpu = time.perf_counter() - t0, _cpu([me]) - c0
    with contextlib.suppress(Exception):
        app.close()
    return {"rate": n / elapsed, "producer_us": cpu * 1e6 / n}


class Pool:
    """A worker supervisor with ``processes`` workers on one file, in its own process group."""

    def __init__(self, tmp: Path, db: Path, name: str, processes: int) -> None:
        self.tmp, self.db, self.name, self.processes = tmp, db, name, processes
        self.worker_id = f"w{uuid.uuid4().hex[:6]}"
        self.log = tmp / f"workers-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Pool:
        env = {**os.environ, "QTASKS_BENCH_APP": self.name, "QTASKS_BROKER_URL": f"sqlite:///{self.db}",
               "QTASKS_LOG_LEVEL": "INFO",
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

    def _wait_ready(self, timeout: float) -> None:
        wanted = {f"worker {self.worker_id}-{s} serving" for s in range(self.processes)}
        deadline = time.monotonic() + timeout
        while not all(w in self.log.read_text(errors="replace") for w in wanted):
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker pool exited with code {self.proc.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.processes} workers not ready after {timeout}s; see {self.log}")
            time.sleep(0.05)

    def children(self) -> list[psutil.Process]:
        assert self.proc is not None
        with contextlib.suppress(psutil.NoSuchProcess):
            return psutil.Process(self.proc.pid).children(recursive=True)
        return []

    def __exit__(self, *exc: object) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _read(db: Path, sql: str, params: Sequence[Any]) -> Any:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
        return con.execute(sql, params).fetchone()


def drain_once(pool: Pool, app: Any, n: int, chunk: int, timeout: float) -> dict[str, float]:
    """Enqueue ``n`` tasks while ``pool`` runs; tasks/s until the last result is stored, worker CPU µs/task."""
    name, db = pool.name, pool.db
    before = _read(db, "SELECT count(*) FROM records WHERE app = ?", (name,))[0]  # earlier tasks, done or not
    procs = pool.children()
    c0, t0 = _cpu(procs), time.time()
    _enqueue(app, n, chunk)
    deadline = time.monotonic() + timeout
    while _read(db, "SELECT count(*) FROM messages WHERE app = ?", (name,))[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain of {n} tasks not finished after {timeout}s; see {pool.log}")
        time.sleep(0.02)
    cpu = _cpu(procs) - c0
    end, done, total = _read(db, "SELECT max(updated), sum(status = 'success'), count(*) FROM records"
                                 " WHERE app = ?", (name,))
    if total != before + n or done != total:
        raise RuntimeError(f"drain of {n} noop tasks ended with {total - before} records, {total - done} of all "
                           f"{total} not success; see {pool.log}")
    return {"rate": n / (end / 1000 - t0), "worker_us": cpu * 1e6 / n}


def page_times(tmp: Path, records: int, chunk: int = 5000) -> dict[str, float] | None:
    """ms of a 50-task page and of its count, per filter of :data:`PAGES`, over ``records`` records of mixed
    names and statuses (None when the product has no query side). Statuses are set with SQL (a fixture for
    reads, not a measurement of the writes): 1/8 process, 1/8 new, 1/4 error, the rest success."""
    db = tmp / "pages.db"
    app = _client(tmp, db, "bench-pages")
    storage = app.storage
    if not hasattr(storage, "list_tasks"):
        return None
    import asyncio

    from qtasks_fast.abc.query import TaskFilter

    names = ("add", "mul", "noop")  # 3 names against statuses cycling by 8: every name has every status
    for i in range(0, records, chunk):
        app.add_tasks([(names[j % 3], (), {}) for j in range(i, min(records, i + chunk))])
    now = int(time.time() * 1000)
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("UPDATE records SET status = CASE WHEN rowid % 8 = 0 THEN 'process' WHEN rowid % 8 = 1 THEN"
                    " 'new' WHEN rowid % 4 = 2 THEN 'error' ELSE 'success' END, worker_id = 'w-0', started = ?,"
                    " finished = CASE WHEN rowid % 8 > 1 THEN ? - (rowid % 600000) END, expires_at = ? + 86400000,"
                    " traceback = CASE WHEN rowid % 4 = 2 THEN 'Traceback: ' || CASE WHEN rowid % 100 = 2 THEN"
                    " 'TimeoutError' ELSE 'ValueError' END END WHERE app = 'bench-pages'", (now, now, now))
        con.commit()
    out: dict[str, float] = {}

    def timed(coro_fn: Any) -> float:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            asyncio.run(coro_fn())
            best = min(best, (time.perf_counter() - t0) * 1000)
        return best

    for label, fields in PAGES:
        if "finished_after" in fields:
            fields = {"finished_after": time.time() + fields["finished_after"]}
        f = TaskFilter(**fields)
        out[f"page {label}"] = timed(lambda f=f: storage.list_tasks(["default"], f, 50))
    out["count (no filter)"] = timed(lambda: storage.count_tasks(["default"], TaskFilter()))
    return out


def measure(n: int, repeats: int, chunk: int, processes: Sequence[int], page_records: int = 0) -> dict[str, Any]:
    """Every case ``repeats`` times, interleaved (a noisy moment hits all alike); medians in the headline;
    then, with ``page_records``, the task-list timings of :func:`page_times`."""
    runs: dict[str, list[dict[str, float]]] = {"enqueue": [], **{f"drain-p{p}": [] for p in processes}}
    with tempfile.TemporaryDirectory(prefix="qtasks-bench-sqlite-") as tmp_name, contextlib.ExitStack() as stack:
        tmp = Path(tmp_name)
        (tmp / f"{APP_MODULE}.py").write_text(APP_SOURCE)
        pools: dict[int, tuple[Pool, Any]] = {}
        for p in processes:
            db = tmp / f"drain-p{p}.db"
            app = _client(tmp, db, f"bench-drain-p{p}")
            _enqueue(app, 1, 1)  # the schema exists before the workers open the file
            pool = stack.enter_context(Pool(tmp, db, f"bench-drain-p{p}", p))
            drain_once(pool, app, WARM_UP, chunk, 120)
            pools[p] = (pool, app)
        for _ in range(repeats):
            runs["enqueue"].append(bulk_enqueue(tmp, n, chunk))
            for p, (pool, app) in pools.items():
                runs[f"drain-p{p}"].append(drain_once(pool, app, n, chunk, 120 + n / 100))
        pages = page_times(tmp, page_records) if page_records else None

    def med(case: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[case])

    rows = [{"case": f"bulk enqueue (add_tasks, chunks of {chunk}), no worker", "n": n,
             "tasks/s": med("enqueue", "rate"), "runs": [round(r["rate"]) for r in runs["enqueue"]],
             "producer µs/task": med("enqueue", "producer_us")}]
    rows += [{"case": f"drain, {p} process{'es' if p > 1 else ''} (enqueued while it runs)", "n": n,
              "tasks/s": med(f"drain-p{p}", "rate"), "runs": [round(r["rate"]) for r in runs[f"drain-p{p}"]],
              "workers µs/task": med(f"drain-p{p}", "worker_us")} for p in processes]
    headline = {"enqueue_rate": med("enqueue", "rate"), "enqueue_producer_us": med("enqueue", "producer_us"),
                "drain_rate_by_processes": {str(p): med(f"drain-p{p}", "rate") for p in processes},
                "drain_worker_us_by_processes": {str(p): med(f"drain-p{p}", "worker_us") for p in processes}}
    if pages:
        headline["page_ms"] = pages
        rows += [{"case": f"{label} over {page_records:,} records (best of 5)", "n": page_records, "ms": ms}
                 for label, ms in pages.items()]
    return {"params": {"n": n, "repeats": repeats, "chunk": chunk, "processes": list(processes),
                       "page_records": page_records}, "rows": rows,
            "notes": ["Fresh SQLite files in a temporary folder (WAL, synchronous=NORMAL, the product's defaults); "
                      "workers µs/task is the CPU of every worker process over the drain (fetch, run, settle)."],
            "headline": headline}


def run(ctx: Any) -> dict[str, Any]:
    """The suite in ``python -m qtasks_fast.benchmarks`` (``--n``, ``--repeats``, ``--chunk``, ``--processes``)."""
    ctx.begin("sqlite", 1)
    ctx.step("sqlite: bulk enqueue and drain")
    try:
        return measure(ctx.n, ctx.repeats, ctx.args.chunk, ctx.args.process_counts)
    finally:
        ctx.end()


def main(argv: list[str] | None = None) -> int:
    """Standalone: writes ``sqlite.json`` and a ``summary.json`` whose ``headlines.sqlite`` ab reads."""
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.sqlite", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="tasks per measurement (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="repeats per case, median taken (default %(default)s)")
    p.add_argument("--chunk", type=int, default=1000, help="tasks per add_tasks call (default %(default)s)")
    p.add_argument("--processes", default="1", help="worker process counts of the drain, e.g. 1,2 (default 1)")
    p.add_argument("--page-records", type=int, default=0,
                   help="also time 50-task pages and counts over this many records (e.g. 300000; needs the query "
                        "side)")
    p.add_argument("--out", type=Path, default=Path.cwd() / "bench-sqlite", help="results folder")
    args = p.parse_args(argv)
    try:
        counts = [int(x) for x in args.processes.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or min(args.n, args.repeats, args.chunk) < 1:
        p.error("--n, --repeats, --chunk must be at least 1 and --processes a list such as 1,2")
    result = measure(args.n, args.repeats, args.chunk, counts, args.page_records)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sqlite.json").write_text(json.dumps({"suite": "sqlite", **result}, indent=1))
    (args.out / "summary.json").write_text(json.dumps({"headlines": {"sqlite": result["headline"]}}, indent=1))
    for row in result["rows"]:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
