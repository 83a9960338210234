"""A worker process's own instructions per no-op task, under callgrind: a load-immune before/after (issue 16).

    .venv/bin/python benchmarks/worker_task_cost.py [--small 1000] [--big 5000] [--python OTHER_TREE/.venv/bin/python]

Why: the drain suite's worker CPU per task is read from /proc in clock ticks (0.5 µs steps at 20,000 tasks) and
swings with the machine's load; a change of 1 µs per task does not show. Here a private redis-server (no
persistence) is filled with N ``noop`` tasks by a plain process, then one real worker (``Worker.run`` on uvloop,
the Redis broker, default concurrency) drains them under ``valgrind --tool=callgrind``, counting only the drain
(``--toggle-collect=functools_reduce``: the worker's start, its imports and the fill are not counted). The
instructions per task are (Ir of the big run - Ir of the small run) / (big - small): the worker's start and stop
cancel out. ``--python`` runs the same harness with another interpreter (e.g. main's venv), whose
``qtasks_fast`` is then the one measured. Batch sizes follow timing under valgrind, so repeat runs differ by ~1 %.
"""

from __future__ import annotations

import argparse
import functools
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path


def _drain(url: str, name: str, n: int, concurrency: int | None = None) -> None:
    """The measured part: one worker drains ``n`` tasks of app ``name``, then stops."""
    import asyncio

    import uvloop

    from qtasks_fast import QueueTasks
    from qtasks_fast.benchmarks.apps import register
    from qtasks_fast.worker.worker import Worker

    app = register(QueueTasks(name, broker_url=url))

    async def main() -> None:
        w = Worker(app, concurrency=concurrency)
        stop = asyncio.Event()
        run = asyncio.create_task(w.run(stop))
        while w.settled < n:
            await asyncio.sleep(0.05)
        stop.set()
        await run

    functools.reduce(lambda _acc, _i: uvloop.run(main()), range(1), None)


def _fill(url: str, name: str, n: int, task: str = "noop") -> None:
    from qtasks_fast import QueueTasks
    from qtasks_fast.benchmarks.apps import register

    app = register(QueueTasks(name, broker_url=url))
    for i in range(0, n, 1000):
        app.add_tasks([(task, (), {})] * min(1000, n - i))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(python: str, url: str, n: int, out: Path, task: str, concurrency: int) -> int:
    name = f"wcost-{uuid.uuid4().hex[:8]}"
    me = str(Path(__file__).resolve())
    extra = [task, str(concurrency)]
    subprocess.run([python, me, "--role", "fill", url, name, str(n), *extra], check=True)
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=functools_reduce",
                    f"--callgrind-out-file={out}", python, me, "--role", "drain", url, name, str(n), *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for line in out.read_text(errors="replace").splitlines():
        m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
        if m:
            return int(m.group(1))
    raise ValueError(f"no summary line in {out}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        role, url, name, n, task, concurrency = sys.argv[2:8]
        if role == "fill":
            _fill(url, name, int(n), task)
        else:
            _drain(url, name, int(n), int(concurrency) or None)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--big", type=int, default=5000)
    p.add_argument("--python", action="append", help="interpreter(s) to measure (default: this one)")
    p.add_argument("--task", default="noop", help="the benchmark task drained (io_redis: one INCR per task)")
    p.add_argument("--concurrency", type=int, default=0, help="the worker's concurrency (default: the config's)")
    p.add_argument("--keep", help="a folder to keep the callgrind outputs in (for callgrind_annotate)")
    args = p.parse_args()
    port = _free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            where = Path(args.keep or tmp)
            where.mkdir(parents=True, exist_ok=True)
            for i, python in enumerate(args.python or [sys.executable]):
                small = _measure(python, url, args.small, where / f"small{i}.out", args.task, args.concurrency)
                big = _measure(python, url, args.big, where / f"big{i}.out", args.task, args.concurrency)
                per = (big - small) / (args.big - args.small)
                print(f"{python}: {per:,.0f} instructions per task (Ir {small:,} @ {args.small}, {big:,} @ {args.big})")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
