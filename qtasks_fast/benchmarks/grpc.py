"""grpc: the gRPC gateway (``qtasks-fast grpc``, issue 14) next to the in-process Python API, in the same run.

Each case runs twice per repeat, back to back on a fresh app: through a ``qtasks-fast grpc`` process (a grpcio
client here) and through the Python client in this process, so the ratio is what the gateway costs:

* unary ``AddTask`` one by one (sync stub) vs ``app.add_task``;
* unary ``AddTask`` concurrent (``grpc.aio``, ``--async-concurrency`` calls in flight) vs the async client's
  ``add_task`` under ``asyncio.gather``;
* ``AddTasks`` in batches of ``--chunk`` vs ``app.add_tasks``;
* ``WatchTasks`` to 10 watchers while a 1-process worker pool drains the tasks (new, process and success of
  each: events delivered per second, summed over the watchers) vs 10 readers of ``qtasks_fast.service.events``.
No worker runs in the enqueue cases. Unary cases are capped at 5,000 calls (``--n`` below that wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc

from qtasks_fast import service
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.common import ROOT, Ctx, WorkerPool, app_keys, median, unique
from qtasks_fast.grpc.v1 import qtasks_fast_pb2 as pb
from qtasks_fast.grpc.v1 import qtasks_fast_pb2_grpc as pb_grpc

TOKEN = "bench-grpc-token-0123456789abcdef"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
WATCHERS = 10
UNARY_CAP = 5000


@contextlib.contextmanager
def gateway(ctx: Ctx, app_name: str) -> Iterator[str]:
    """``qtasks-fast -A qtasks_fast.benchmarks.apps:app grpc`` for ``app_name`` on a free port; its address."""
    log_path = ctx.logs / f"grpc-{app_name}.log"
    env = {**os.environ, "QTASKS_BENCH_APP": app_name, "QTASKS_BROKER_URL": ctx.url, "QTASKS_GRPC_TOKEN": TOKEN,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "qtasks_fast", "-A", "qtasks_fast.benchmarks.apps:app", "grpc",
                                 "--port", "0"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "serving app" not in (text := log_path.read_text(errors="replace")):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gRPC gateway did not start; see {log_path}")
            time.sleep(0.02)
        yield text.split(" on ", 1)[1].split()[0]  # "serving app 'x' over gRPC (plaintext) on 127.0.0.1:port"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the gRPC gateway did not stop within 20 s of SIGTERM; see {log_path}") from None


def noop() -> pb.AddTaskRequest:
    return pb.AddTaskRequest(name="noop")


def unary_one(ctx: Ctx, n: int, via_grpc: bool) -> float:
    name = unique("bg")
    with app_keys(ctx, name):
        if not via_grpc:
            add = make_app(name, ctx.url).add_task
            add("noop")
            t0 = time.perf_counter()
            for _ in range(n):
                add("noop")
            return n / (time.perf_counter() - t0)
        with gateway(ctx, name) as target, grpc.insecure_channel(target) as channel:
            call = pb_grpc.QTasksFastStub(channel).AddTask
            call(noop(), metadata=AUTH)
            t0 = time.perf_counter()
            for _ in range(n):
                call(noop(), metadata=AUTH)
            return n / (time.perf_counter() - t0)


async def _gathered(n: int, width: int, call: Callable[[], Awaitable[Any]]) -> float:
    await call()
    left = iter(range(n))

    async def worker() -> None:
        for _ in left:
            await call()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return n / (time.perf_counter() - t0)


def unary_concurrent(ctx: Ctx, n: int, via_grpc: bool) -> float:
    name, width = unique("bg"), ctx.args.async_concurrency

    async def python() -> float:
        app = make_app(name, ctx.url, AsyncQueueTasks)
        try:
            return await _gathered(n, width, lambda: app.add_task("noop"))
        finally:
            await app.close()

    async def remote(target: str) -> float:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.QTasksFastStub(channel)
            return await _gathered(n, width, lambda: stub.AddTask(noop(), metadata=AUTH))

    with app_keys(ctx, name):
        if not via_grpc:
            return asyncio.run(python())
        with gateway(ctx, name) as target:
            return asyncio.run(remote(target))


def batches(ctx: Ctx, n: int, via_grpc: bool) -> float:
    name, chunk = unique("bg"), ctx.args.chunk
    with app_keys(ctx, name):
        if not via_grpc:
            app = make_app(name, ctx.url)
            calls: list[tuple[str, tuple[()], dict[str, Any]]] = [("noop", (), {})] * chunk
            app.add_tasks(calls[:10])
            t0 = time.perf_counter()
            for i in range(0, n, chunk):
                app.add_tasks(calls[:min(chunk, n - i)])
            return n / (time.perf_counter() - t0)
        with gateway(ctx, name) as target, grpc.insecure_channel(target) as channel:
            call = pb_grpc.QTasksFastStub(channel).AddTasks
            call(pb.AddTasksRequest(calls=[noop()] * 10), metadata=AUTH)
            t0 = time.perf_counter()
            for i in range(0, n, chunk):
                call(pb.AddTasksRequest(calls=[noop()] * min(chunk, n - i)), metadata=AUTH)
            return n / (time.perf_counter() - t0)


def watch(ctx: Ctx, n: int, via_grpc: bool) -> float:
    """Events per second delivered to :data:`WATCHERS` readers (summed) while a pool drains ``n`` tasks."""
    name = unique("bg")

    async def drain(target: str | None) -> float:
        app = make_app(name, ctx.url, AsyncQueueTasks)
        start = (await service.events(app, "$", 1)).cursor  # every reader starts here: no race with the drain
        counts = [0] * WATCHERS

        async def python_reader(i: int) -> None:
            cursor, done = start, 0
            while done < n:
                page = await service.events(app, cursor, 1000, 1.0)
                counts[i] += len(page.events)
                done += sum(e.status == "success" for e in page.events)
                cursor = page.cursor

        async def grpc_reader(i: int, stub: Any) -> None:
            done = 0
            async for e in stub.WatchTasks(pb.WatchTasksRequest(after=start), metadata=AUTH):
                counts[i] += 1
                done += e.status == "success"
                if done >= n:
                    return

        try:
            async with contextlib.AsyncExitStack() as stack:
                if target is None:
                    readers = [python_reader(i) for i in range(WATCHERS)]
                else:
                    channel = await stack.enter_async_context(grpc.aio.insecure_channel(target))
                    stub = pb_grpc.QTasksFastStub(channel)
                    readers = [grpc_reader(i, stub) for i in range(WATCHERS)]
                t0 = time.perf_counter()
                running = asyncio.gather(*readers)
                for i in range(0, n, 1000):
                    await app.add_tasks([("noop", (), {})] * min(1000, n - i))
                await asyncio.wait_for(running, 120)
                return sum(counts) / (time.perf_counter() - t0)
        finally:
            await app.close()

    with app_keys(ctx, name), WorkerPool(ctx, name, 1, label=f"{name}-watch"):
        if not via_grpc:
            return asyncio.run(drain(None))
        with gateway(ctx, name) as target:
            return asyncio.run(drain(target))


def run(ctx: Ctx) -> dict[str, Any]:
    n, reps, chunk = ctx.n, ctx.repeats, ctx.args.chunk
    unary_n = min(n, UNARY_CAP)
    width = ctx.args.async_concurrency
    cases: list[tuple[str, str, int, Callable[[Ctx, int, bool], float]]] = [
        ("AddTask one by one", "calls/s", unary_n, unary_one),
        (f"AddTask concurrent ({width} in flight)", "calls/s", unary_n, unary_concurrent),
        (f"AddTasks (batches of {chunk})", "tasks/s", n, batches),
        (f"WatchTasks, {WATCHERS} watchers during a drain", "events/s", min(n, 5000), watch),
    ]
    ctx.begin("grpc", len(cases) * reps * 2)
    rates: dict[tuple[str, bool], list[float]] = {}
    for _ in range(reps):
        for case, _, k, fn in cases:
            for via_grpc in (True, False):
                ctx.step(f"grpc: {case[:28]} ({'gRPC' if via_grpc else 'Python'})")
                rates.setdefault((case, via_grpc), []).append(fn(ctx, k, via_grpc))
    ctx.end()
    rows = []
    for case, unit, k, _ in cases:
        g, p = rates[(case, True)], rates[(case, False)]
        rows.append({"case": case, "n": k, "unit": unit, "gRPC": round(median(g)),
                     "in-process Python": round(median(p)),
                     "gRPC / Python": round(median(a / b for a, b in zip(g, p, strict=True)), 2),
                     "gRPC runs": [round(x) for x in g], "Python runs": [round(x) for x in p]})
    keys = ("addtask_one", "addtask_concurrent", "addtasks", "watch")
    headline = {f"{key}_{side}": row[column] for key, row in zip(keys, rows, strict=True)
                for side, column in (("grpc", "gRPC"), ("python", "in-process Python"), ("ratio", "gRPC / Python"))}
    return {
        "params": {"n": n, "repeats": reps, "chunk": chunk, "async_concurrency": width, "watchers": WATCHERS},
        "rows": rows,
        "headline": headline,
        "notes": ["gRPC: a qtasks-fast grpc process (token on, plaintext, loopback) called by grpcio from this "
                  "process; Python: the same app's client in this process. Both on the same Redis, one after the "
                  "other per repeat; the ratio is the median of the per-repeat ratios.",
                  "Each gRPC AddTask is one service.submit (argument check, enqueue, audit entry) plus the "
                  "record's conversion and two protobuf hops; the server is one Python process."],
    }
