"""dispatch: enqueue -> the task body starts, and enqueue -> result back, on an idle fleet, next to raw Redis.

One worker process, one task at a time. Five kinds of trip alternate in blocks of :data:`BLOCK`, so that a
swing of the machine hits all of them alike (an unpaired run here moved our p50 by 2x between repeats):

* ``ours: start`` — ``add_task("stamp")`` called -> the task body's first line (``time.monotonic()`` is
  system-wide on Linux, so the body's reading and the producer's compare); the producer then waits for the
  result outside the measured interval;
* ``raw streams`` — XADD called -> a blocked ``XREADGROUP COUNT 1`` returns in another process (the
  least any streams queue can do);
* ``raw list`` — LPUSH called -> a blocked BRPOP returns (the classic list queue of Huey, RQ, arq);
* ``ours: result`` — ``add_task("noop", timeout=5)`` called -> the result visible to the caller;
* ``raw round trip`` — XADD -> XREADGROUP -> RPUSH -> BLPOP (what ``ours: result`` does at the minimum).

Times run from the call, not from its return: a consumer blocked in its read wakes while the producer's
client is still parsing the push's reply, so "from the return" is often negative.

Each repeat reports its p50s and the ratios of the same repeat; the spread of a ratio across repeats shows
whether it is as steady as the references'.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.ceiling import GROUP, RawEcho
from qtasks_fast.benchmarks.common import Ctx, WorkerPool, app_keys, median, percentile, spawn_module, unique

#: trips of one kind in a row before the next kind
BLOCK = 100
WARMUP = 30


class RawStamp:
    """A raw consumer process blocked in XREADGROUP (``streams``) or BRPOP (``list``) that answers each
    entry with the monotonic time its read returned."""

    def __init__(self, ctx: Ctx, kind: str) -> None:
        self.ctx, self.kind = ctx, kind
        self.r = ctx.redis()
        self.key = f"bench:{kind}:" + unique("st")
        self.ready = f"{self.key}:ready"
        self.reply = f"{self.key}:reply:".encode()
        self.proc: Any = None

    def __enter__(self) -> RawStamp:
        args = ["stamp", self.ctx.url, self.key, GROUP, "stamp", self.ready] if self.kind == "streams" else [
            "bstamp", self.ctx.url, self.key, self.ready]
        self.proc = spawn_module("qtasks_fast.benchmarks._raw", args, stderr_to=self.ctx.logs / "dispatch.log")
        if self.r.blpop([self.ready], timeout=30) is None:
            self.__exit__()
            raise TimeoutError(f"raw {self.kind} consumer did not start within 30 s; see logs/dispatch.log")
        for _ in range(WARMUP):
            self.trip()
        return self

    def trip(self) -> float:
        """Seconds from the push being called to the consumer's read returning."""
        u = str(uuid.uuid4()).encode()
        sent = time.monotonic()
        if self.kind == "streams":
            self.r.xadd(self.key, {"u": u})
        else:
            self.r.lpush(self.key, u)
        got = self.r.blpop([self.reply + u], timeout=5)
        if got is None:
            raise TimeoutError(f"raw {self.kind} consumer did not answer within 5 s")
        self.r.unlink(self.reply + u)
        return float(got[1]) - sent

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                if self.kind == "streams":
                    self.r.xadd(self.key, {"stop": 1})
                else:
                    self.r.lpush(self.key, b"stop")
                self.proc.wait(10)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self.r.unlink(self.key, self.ready)


def start_trip(app: Any) -> float:
    """Seconds from calling ``add_task`` to the body's first line."""
    sent = time.monotonic()
    task = app.add_task("stamp")
    done = app.wait(task.uuid, timeout=5)
    if done is None or done.status != "success":
        raise RuntimeError(f"stamp task did not succeed within 5 s: {done!r}")
    return float(done.returning) - sent


def result_trip(app: Any) -> float:
    t = time.perf_counter()
    task = app.add_task("noop", timeout=5)
    elapsed = time.perf_counter() - t
    if task is None or task.status != "success":
        raise RuntimeError(f"noop round trip did not succeed within 5 s: {task!r}")
    return elapsed


KINDS = ("ours: start", "raw streams", "raw list", "ours: result", "raw round trip")


def one_repeat(samples: int, trips: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {k: [] for k in KINDS}
    while len(got[KINDS[0]]) < samples:
        k = min(BLOCK, samples - len(got[KINDS[0]]))
        for kind in KINDS:
            fn = trips[kind]
            got[kind] += [fn() for _ in range(k)]
    return {k: sorted(v) for k, v in got.items()}


def run(ctx: Ctx) -> dict[str, Any]:
    samples = ctx.args.latency_samples // 2
    reps = ctx.repeats
    ctx.begin("dispatch", reps)
    name = unique("bd")
    app = make_app(name, ctx.url)
    repeats: list[dict[str, float]] = []
    with app_keys(ctx, name), WorkerPool(ctx, name, 1, concurrency=ctx.args.concurrency, label="dispatch"), \
            RawStamp(ctx, "streams") as streams, RawStamp(ctx, "list") as lst, RawEcho(ctx) as echo:
        for _ in range(WARMUP):
            start_trip(app)
            result_trip(app)
        trips = {"ours: start": lambda: start_trip(app), "raw streams": streams.trip, "raw list": lst.trip,
                 "ours: result": lambda: result_trip(app), "raw round trip": echo.trip}
        for i in range(reps):
            ctx.step(f"dispatch: repeat {i + 1}/{reps}")
            got = one_repeat(samples, trips)
            p50 = {k: percentile(v, 50) * 1e6 for k, v in got.items()}
            p99 = {k: percentile(v, 99) * 1e6 for k, v in got.items()}
            repeats.append({**{f"{k} p50": v for k, v in p50.items()}, **{f"{k} p99": v for k, v in p99.items()},
                            "start / raw streams": p50["ours: start"] / p50["raw streams"],
                            "start / raw list": p50["ours: start"] / p50["raw list"],
                            "result / raw round trip": p50["ours: result"] / p50["raw round trip"]})
    ctx.end()
    rows = []
    for i, rep in enumerate(repeats):
        rows.append({"repeat": i + 1, **{f"{k} p50 µs": round(rep[f"{k} p50"]) for k in KINDS},
                     "start ÷ raw streams": round(rep["start / raw streams"], 2),
                     "start ÷ raw list": round(rep["start / raw list"], 2),
                     "result ÷ raw round trip": round(rep["result / raw round trip"], 2)})

    def spread(key: str) -> float:
        vals = [r[key] for r in repeats]
        return max(vals) / min(vals)

    spreads = {k: spread(f"{k} p50") for k in KINDS}
    ratio_spreads = {k: spread(k) for k in ("start / raw streams", "start / raw list", "result / raw round trip")}
    headline = {
        "start_over_raw_streams": median(r["start / raw streams"] for r in repeats),
        "start_over_raw_list": median(r["start / raw list"] for r in repeats),
        "result_over_raw_rt": median(r["result / raw round trip"] for r in repeats),
        "start_p50_us": median(r["ours: start p50"] for r in repeats),
        "raw_streams_p50_us": median(r["raw streams p50"] for r in repeats),
        "raw_list_p50_us": median(r["raw list p50"] for r in repeats),
        "spread": spreads,
        "ratio_spread": ratio_spreads,
    }
    notes = [f"{samples} trips of each kind per repeat, alternating in blocks of {BLOCK}; one worker process, "
             "idle apart from the trip.",
             "start = add_task called -> the body's first line; raw streams = XADD called -> a blocked "
             "XREADGROUP returns; raw list = LPUSH called -> a blocked BRPOP returns.",
             "spread of p50 across repeats (max/min): " + ", ".join(
                 f"{k} {v:.2f}" for k, v in spreads.items()) + "; of the ratios: " + ", ".join(
                 f"{k} {v:.2f}" for k, v in ratio_spreads.items()) + "."]
    return {"params": {"samples": samples, "repeats": reps, "block": BLOCK}, "rows": rows, "notes": notes,
            "headline": headline}
