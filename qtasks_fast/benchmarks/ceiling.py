"""ceiling: what raw redis-py + hiredis reach on this machine and this Redis, in the same run.

* ``xadd``: one producer, pipelined XADD in batches (the bound for bulk enqueue);
* ``drain``: that producer while C consumer processes run XREADGROUP COUNT 500 + pipelined XACK,
  from the first XADD to the last ACK (the bound for the drain suite);
* ``consume``: the consumers alone on a pre-filled stream;
* ``round trip``: XADD -> a consumer's XREADGROUP -> RPUSH reply -> the caller's BLPOP, p50/p99.

Entries are ``{u: uuid, d: <real noop envelope>}``, the size the product writes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from qtasks_fast.benchmarks.common import (
    CpuMeter,
    Ctx,
    command_cost,
    command_stats,
    median,
    noop_blob,
    percentile,
    redis_process,
    spawn_module,
    unique,
)

GROUP = "g"
READ_COUNT = 500


def _produce(r: redis.Redis, stream: str, n: int, chunk: int, uuids: list[bytes], blob: bytes) -> None:
    for i in range(0, n, chunk):
        pipe = r.pipeline(transaction=False)
        for u in uuids[i:i + chunk]:
            pipe.xadd(stream, {"u": u, "d": blob})
        pipe.execute()


def _consumers(ctx: Ctx, stream: str, k: int) -> tuple[list[Any], str, str]:
    r = ctx.redis()
    ready, go, done = f"{stream}:ready", f"{stream}:go", f"{stream}:done"
    procs = [spawn_module("qtasks_fast.benchmarks._raw", ["consumer", ctx.url, stream, GROUP, f"c{i}", ready, go, done,
                                              str(READ_COUNT)], stderr_to=ctx.logs / "ceiling.log")
             for i in range(k)]
    for _ in range(k):
        if r.blpop([ready], timeout=30) is None:
            raise TimeoutError("raw consumers did not start within 30 s; see logs/ceiling.log")
    return procs, go, done


def _finish(procs: list[Any], n: int) -> float:
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    got = sum(x["count"] for x in results)
    if got != n:
        raise RuntimeError(f"raw consumers acked {got} entries, expected {n}")
    return max(x["last_ack"] for x in results)


def drain_once(ctx: Ctx, n: int, chunk: int, k: int, prefill: bool) -> dict[str, Any]:
    r = ctx.redis()
    meter = CpuMeter({"redis": redis_process(ctx.url)})
    stats0: dict[str, tuple[int, int]] = {}
    stream = "bench:raw:" + unique("s")
    uuids = [str(uuid.uuid4()).encode() for _ in range(n)]
    _, blob = noop_blob()
    try:
        procs, go, done = _consumers(ctx, stream, k)
        if prefill:
            _produce(r, stream, n, chunk, uuids, blob)
            r.set(done, 1)
            stats0 = command_stats(r)
            meter.start()
            t0 = time.time()
            r.rpush(go, *[1] * k)
        else:
            stats0 = command_stats(r)
            meter.start()
            r.rpush(go, *[1] * k)
            t0 = time.time()
            _produce(r, stream, n, chunk, uuids, blob)
            r.set(done, 1)
        end = _finish(procs, n)
        cpu = meter.stop()
        return {"rate": n / (end - t0), "redis_us": cpu["redis_s"] * 1e6 / n,
                "commands": command_cost(stats0, command_stats(r), n)}
    finally:
        r.unlink(stream, f"{stream}:ready", f"{stream}:go", f"{stream}:done")


def xadd_once(ctx: Ctx, n: int, chunk: int) -> float:
    r = ctx.redis()
    stream = "bench:raw:" + unique("x")
    uuids = [str(uuid.uuid4()).encode() for _ in range(n)]
    _, blob = noop_blob()
    try:
        t0 = time.perf_counter()
        _produce(r, stream, n, chunk, uuids, blob)
        return n / (time.perf_counter() - t0)
    finally:
        r.unlink(stream)


def xadd_single(ctx: Ctx, n: int) -> float:
    """One XADD per round trip (the bound for add_task one by one)."""
    r = ctx.redis()
    stream = "bench:raw:" + unique("x1")
    uuids = [str(uuid.uuid4()).encode() for _ in range(n)]
    _, blob = noop_blob()
    try:
        t0 = time.perf_counter()
        for u in uuids:
            r.xadd(stream, {"u": u, "d": blob})
        return n / (time.perf_counter() - t0)
    finally:
        r.unlink(stream)


class RawEcho:
    """A raw echo consumer process: :meth:`trip` times one XADD -> XREADGROUP -> RPUSH -> BLPOP.

    A context manager, so that another suite can alternate raw round trips with its own (the
    latency suite does: a ratio of two medians taken minutes apart mostly measures the machine).
    """

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.r = ctx.redis()
        self.stream = "bench:raw:" + unique("rt")
        self.ready = f"{self.stream}:ready"
        self.reply = f"{self.stream}:reply:".encode()
        self.blob = noop_blob()[1]
        self.proc: Any = None

    def __enter__(self) -> RawEcho:
        self.proc = spawn_module("qtasks_fast.benchmarks._raw",
                                 ["echo", self.ctx.url, self.stream, GROUP, "echo", self.ready],
                                 stderr_to=self.ctx.logs / "ceiling.log")
        if self.r.blpop([self.ready], timeout=30) is None:
            self.__exit__()
            raise TimeoutError("raw echo consumer did not start")
        for _ in range(20):  # warm-up
            self.trip()
        return self

    def trip(self) -> float:
        """Seconds of one raw round trip."""
        u = str(uuid.uuid4()).encode()
        t = time.perf_counter()
        self.r.xadd(self.stream, {"u": u, "d": self.blob})
        if self.r.blpop([self.reply + u], timeout=5) is None:
            raise TimeoutError("raw round trip got no reply within 5 s")
        return time.perf_counter() - t

    def __exit__(self, *exc: object) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.r.xadd(self.stream, {"stop": 1})
                self.proc.wait(10)
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
            self.r.unlink(self.stream, self.ready)


def round_trips(ctx: Ctx, samples: int) -> list[float]:
    """Seconds per XADD -> XREADGROUP -> RPUSH -> BLPOP, ``samples`` times, sorted."""
    with RawEcho(ctx) as echo:
        return sorted(echo.trip() for _ in range(samples))


def run(ctx: Ctx) -> dict[str, Any]:
    n, chunk, k = ctx.n, ctx.args.chunk, ctx.args.ceiling_consumers
    reps = ctx.repeats
    ctx.begin("ceiling", 4 * reps + 1)
    xadd: list[float] = []
    single: list[float] = []
    drain: list[float] = []
    consume: list[float] = []
    drain_redis_us: list[float] = []
    commands: dict[str, Any] = {}
    for _ in range(reps):
        ctx.step("ceiling: pipelined XADD")
        xadd.append(xadd_once(ctx, n, chunk))
        ctx.step("ceiling: XADD one by one")
        single.append(xadd_single(ctx, n))
        ctx.step(f"ceiling: producer + {k} consumers")
        once = drain_once(ctx, n, chunk, k, prefill=False)
        drain.append(once["rate"])
        drain_redis_us.append(once["redis_us"])
        commands = once["commands"]
        ctx.step(f"ceiling: {k} consumers, pre-filled")
        consume.append(drain_once(ctx, n, chunk, k, prefill=True)["rate"])
    ctx.step("ceiling: round trip")
    rts = round_trips(ctx, ctx.args.latency_samples)
    ctx.end()
    rt = {"p50": percentile(rts, 50) * 1e6, "p99": percentile(rts, 99) * 1e6, "p99.9": percentile(rts, 99.9) * 1e6}
    rows = [
        {"case": f"pipelined XADD, batches of {chunk}", "tasks/s": median(xadd),
         "runs": [round(x) for x in xadd]},
        {"case": "XADD one by one (a round trip each)", "tasks/s": median(single),
         "runs": [round(x) for x in single]},
        {"case": f"XADD while {k} consumers XREADGROUP+XACK (drain)", "tasks/s": median(drain),
         "runs": [round(x) for x in drain], "redis µs/task": median(drain_redis_us)},
        {"case": f"{k} consumers alone, pre-filled stream", "tasks/s": median(consume),
         "runs": [round(x) for x in consume]},
        {"case": "round trip XADD->XREADGROUP->RPUSH->BLPOP", "p50 µs": rt["p50"], "p99 µs": rt["p99"],
         "p99.9 µs": rt["p99.9"]},
    ]
    return {
        "params": {"n": n, "chunk": chunk, "consumers": k, "read_count": READ_COUNT, "repeats": reps,
                   "rt_samples": len(rts)},
        "rows": rows,
        "headline": {"xadd_rate": median(xadd), "xadd_single_rate": median(single), "drain_rate": median(drain),
                     "consume_rate": median(consume),
                     "drain_redis_us_per_task": median(drain_redis_us),
                     "rt_p50_us": rt["p50"], "rt_p99_us": rt["p99"], "rt_p999_us": rt["p99.9"]},
        "notes": ["Raw loops do no decoding and no result storage: a bound, not a like-for-like queue.",
                  "Redis server time per task in the drain (INFO commandstats): "
                  + ", ".join(f"{c} {v['µs/task']:.1f} µs ({v['calls/task']:g} calls)"
                              for c, v in list(commands.items())[:6]) + "."],
        "commands": commands,
    }
