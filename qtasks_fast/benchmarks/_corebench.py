"""The core suite's worker script: times the dispatch core on identical batches in *this* process.

    python -m qtasks_fast.benchmarks._corebench BATCH ROUNDS ITERS [FUNCS]

Prints JSON ``{"compiled": bool, "ns_per_task": {func: ns}}``. Run it with
``QTASKS_PURE_PYTHON=1`` for the pure-Python core. With ``ROUNDS=0`` it times
nothing and runs each of FUNCS (comma-separated, default all) ``ITERS`` times inside
``functools.reduce``, so that ``callgrind --toggle-collect=functools_reduce`` counts
exactly those loops.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from qtasks_fast import _corelib as core
from qtasks_fast.backends.redis import pack
from qtasks_fast.schemas import Envelope

FUNCS = ("decode_batch", "settle_args", "enqueue_args", "encode_envelopes", "run_tasks")


def _worker_class(run: Any) -> Any:
    """A Worker's per-task state (``_run.RunState``, its base class) with its ``_on_done``: what ``task_done``
    updates (outcome buffer, counters, wake-ups)."""
    import asyncio
    from collections import deque

    class _Worker(run.RunState):  # type: ignore[misc,name-defined]
        _on_done = run.task_done

        def __init__(self) -> None:
            self._done: list[Any] = []
            self._retries: list[Any] = []
            self.inflight: set[Any] = set()
            self.unsettled = self.active = self.settled = self.settled_failed = 0
            self.concurrency = 1 << 30
            self.backlog: deque[Any] = deque()
            self._done_event, self.slot_free = asyncio.Event(), asyncio.Event()  # set, as in a busy worker

    return _Worker


class _Handler:
    """The fields of a ``TaskFunc`` the loop reads, for a task called with its arguments as sent."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func, self.echo, self._validator = func, False, None


class _Executor:
    """What the eager runner's loop calls back on a real Executor: ``on_done`` is the worker's ``_on_done``."""

    validate = True

    def __init__(self, w: Any) -> None:
        self.on_done = w._on_done  # the worker's own, as ``Worker`` hands its Executor

    def _finish(self, d: Any, value: Any, exc: BaseException | None) -> None:
        raise AssertionError(f"the plain path must finish {d!r} itself ({exc!r})")

    def _args(self, d: Any) -> Any:
        raise AssertionError("no handler here needs its arguments bound")


def run_tasks_call(ready: list[Any]) -> Callable[[], Any]:
    """The worker's per-task work for no-op async tasks once fetched and decoded (``worker/_run.pyx``): context
    copy, ``current_task``, the coroutine's one step, the result's encoding, the outcome, the worker's
    bookkeeping."""
    from collections import deque

    from qtasks_fast.log import get_logger
    from qtasks_fast.worker import eager

    run, log = eager.run_core, get_logger("worker")
    w = _worker_class(run)()
    w._done_event.set()
    w.slot_free.set()
    ex = _Executor(w)

    async def noop() -> None:
        return None

    async def add(a: int, b: int) -> int:
        return a + b

    handlers = {"noop": _Handler(noop), "add": _Handler(add)}
    for d in ready:
        d.handler = handlers[d.envelope.task_name]
    jobs: deque[Any] = deque()

    def once() -> None:
        jobs.extend(ready)
        run.run_ready(jobs, ex, log)
        w._done.clear()

    return once


def make_batch(batch: int) -> dict[str, Any]:
    """A realistic fetch reply ``[prio, id, body, deliveries]*`` and what settle/enqueue get."""
    now = time.time()
    envs = [Envelope(uuid=str(uuid.UUID(int=i + 1)), task_name="noop" if i % 2 else "add", args=[] if i % 2 else [i, 2],
                     created_at=now) for i in range(batch)]
    blobs = [core.encode(e) for e in envs]
    flat: list[Any] = []
    for i, blob in enumerate(blobs):
        flat += [0, f"{1_700_000_000_000 + i}-0".encode(), blob, 1]
    handlers = {"noop": object(), "add": object()}
    ready: list[Any] = []
    core.decode_batch("default", flat, handlers, 1 << 20, ready, [])
    outcomes = [(d, "success", b"\xc0", "", "") for d in ready]
    return {"envs": envs, "blobs": blobs, "flat": flat, "handlers": handlers, "outcomes": outcomes, "ready": ready}


def calls(b: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    flat, handlers, outcomes, envs, blobs = b["flat"], b["handlers"], b["outcomes"], b["envs"], b["blobs"]
    decode_batch, encode_envelopes = core.decode_batch, core.encode_envelopes
    settle_args, enqueue_args = pack.settle_args, pack.enqueue_args  # the Redis backend's packing (_pack.pyx)
    return {
        "decode_batch": lambda: decode_batch("default", flat, handlers, 1 << 20, [], []),
        "settle_args": lambda: settle_args(outcomes, True, "bench-0", "1700000000000"),
        "enqueue_args": lambda: enqueue_args(envs, blobs, "0"),
        "encode_envelopes": lambda: encode_envelopes(envs),
        "run_tasks": run_tasks_call(b["ready"]),
    }


def main(argv: list[str]) -> int:
    batch, rounds, iters = int(argv[0]), int(argv[1]), int(argv[2])
    funcs = argv[3].split(",") if len(argv) > 3 else list(FUNCS)
    fns = calls(make_batch(batch))
    out: dict[str, float] = {}
    for name in funcs:
        fn = fns[name]
        if rounds == 0:  # for callgrind --toggle-collect=functools_reduce: only this loop is counted
            functools.reduce(lambda _acc, _i, fn=fn: fn(), range(iters), None)  # type: ignore[misc]
            continue
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter_ns()
            for _ in range(iters):
                fn()
            best = min(best, (time.perf_counter_ns() - t) / (iters * batch))
        out[name] = best
    from qtasks_fast.worker import eager

    compiled = core.COMPILED and pack.COMPILED and eager.COMPILED
    print(json.dumps({"compiled": compiled, "batch": batch, "ns_per_task": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
