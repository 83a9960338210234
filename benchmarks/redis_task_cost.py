"""Redis' own work per task of redis.lua's hot path, with fixed batches: a load-immune before/after (issue 16).

    .venv/bin/python benchmarks/redis_task_cost.py [--n 5000] [--rounds 3] [--callgrind] \
        [--lua base=/path/to/old/redis.lua] [--lua head=qtasks_fast/backends/redis/redis.lua]
    .venv/bin/python benchmarks/redis_task_cost.py --add-tasks 2000 --callgrind    # per add_task vs a raw XADD

A change of the ops' arguments changes the packing too: compare two trees by running this file with each
tree's interpreter (e.g. the ab tool's base worktree venv) instead of ``--lua`` variants.

Why not the drain suites: there the worker's batch sizes follow the machine's load (a busier Redis makes bigger
settle batches, and per-batch costs spread over more tasks), so Redis CPU per task moves ±20 % between runs of
the same code on this shared VM. Here one process plays producer and worker through the real broker (the
contract harness: ``RedisBroker.enqueue`` = op enqueue per chunk of ``--enqueue-batch``, ``fetch`` + ``settle``
of ``--settle-batch`` no-op outcomes), so every variant sends the same commands in the same batches, and the
server's work per task is what its Lua makes of them. Starts a private redis-server (no persistence; with
``--callgrind`` under valgrind's callgrind, whose instruction count per task is the load-immune measure:
``callgrind_control`` zeroes the counters as a measurement starts and dumps them when it ends). Each ``--lua``
variant is a copy of redis.lua loaded as its own function library (its name carries its hash), the variants
alternating within every round on a flushed keyspace. Also reports redis-server CPU per task (/proc) and the
per-command calls per task (INFO commandstats; Lua's inner commands included).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from qtasks_fast import _corelib as core
from qtasks_fast.backends.redis import script
from qtasks_fast.testing.contract import Harness
from qtasks_fast.testing.contract.harness import envelope, fetch

HERE = Path(script.__file__).with_name("redis.lua")


def use_lua(source: str) -> None:
    """Point script.py's call path at ``source`` (the same derivation as at its import)."""
    lua = source + "return run(KEYS, ARGV)\n"
    sha = hashlib.sha1(lua.encode()).hexdigest()
    fn = f"qtf_{sha[:8]}"
    library = (f"#!lua name={fn}\n{source}redis.register_function('{fn}', run)\n"
               f"redis.register_function{{function_name='{fn}_ro', callback=run, flags={{'no-writes'}}}}\n")
    g = vars(script)
    g.update(SOURCE=source, LUA=lua, SHA=sha, FUNCTION=fn, FUNCTION_RO=f"{fn}_ro", LIBRARY=library,
             _LOAD_SCRIPT=("SCRIPT", "LOAD", lua), _LOAD_LIBRARY=("FUNCTION", "LOAD", "REPLACE", library))


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def stats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in r.info("commandstats").items() if isinstance(v, dict)}


async def drain(url: str, n: int, enq: int, batch: int, backlog: int = 0,
                mark: Callable[[], None] | None = None, idle: bool = False, inflight: int = 0) -> None:
    """Enqueue ``n`` envelopes in chunks of ``enq``, then fetch and settle them ``batch`` at a time; with
    ``backlog``, enqueue that many first and then one chunk before each fetch (a queue that keeps a few hundred
    tasks waiting, as a fleet that keeps up does, instead of one burst). ``mark`` is called between the first
    enqueue and the fetches (a burst: the enqueue's share of the work apart from the fetch and settle's).
    ``idle``: the next chunk is enqueued only after the settle (an idle fleet: nothing waits behind the task
    being settled), instead of before the fetch (a trickle: the next task already waits).
    ``inflight``: the worker holds that many fetched tasks and settles the oldest ``batch`` of them, then fetches
    what it settled, so every settle goes out while later fetched entries are still pending and carries their
    start times (a busy worker whose tasks await I/O: the io-redis pattern) instead of settling all it fetched."""
    h = Harness(url, app_name=f"rtc{os.getpid()}")
    try:
        worker = await h.consumer("w-0")
        none = core.encode(None)
        sent = 0
        while sent < (backlog or n):
            k = min(enq, n - sent)
            await h.broker.enqueue([envelope() for _ in range(k)], h.storage)
            sent += k
        if mark is not None:
            mark()
        left = n
        held: list[Any] = []
        while left:
            if inflight:
                if sent < n:
                    k = min(enq, n - sent)
                    await h.broker.enqueue([envelope() for _ in range(k)], h.storage)
                    sent += k
                if len(held) < inflight:
                    ready, bad = await fetch(worker, count=inflight - len(held))
                    assert not bad, bad
                    held += ready
                if not held:
                    raise RuntimeError(f"{left} tasks never came back")
                done, held = held[:batch], held[batch:]
                await worker.settle([(d, "success", none, "", "") for d in done], h.storage, [])
                left -= len(done)
                continue
            if sent < n and not idle:
                k = min(enq, n - sent)
                await h.broker.enqueue([envelope() for _ in range(k)], h.storage)
                sent += k
            ready, bad = await fetch(worker, count=batch)
            assert not bad, bad
            if not ready:
                raise RuntimeError(f"{left} tasks never came back")
            await worker.settle([(d, "success", none, "", "") for d in ready], h.storage, [])
            left -= len(ready)
            if sent < n and idle:
                k = min(enq, n - sent)
                await h.broker.enqueue([envelope() for _ in range(k)], h.storage)
                sent += k
    finally:
        await h.close()


def add_tasks(url: str, r: redis.Redis, n: int, rounds: int, variants: list[tuple[str, str]],
              dump: Callable[[], int] | None, zero: Callable[[], None]) -> None:
    """Redis' work per ``add_task`` (op add and its round trip, the sync producer) next to a raw XADD round
    trip: what the blocked worker waits for before Redis serves it (it is unblocked once the FCALL returns)."""
    from qtasks_fast.benchmarks.apps import make_app

    for rnd in range(rounds):
        for label, source in variants:
            use_lua(source)
            r.flushall()
            app = make_app(f"rtc{os.getpid()}x{rnd}", url)
            for _ in range(100):
                app.add_task("stamp")  # loads the library; P:q and the streams exist
                r.xadd("rtc:raw", {"u": b"x" * 36})
            for kind, call in (("add_task", lambda app=app: app.add_task("stamp")),
                               ("raw XADD", lambda: r.xadd("rtc:raw", {"u": b"x" * 36}))):
                if dump:
                    zero()
                t0 = time.perf_counter()
                for _ in range(n):
                    call()
                wall = (time.perf_counter() - t0) * 1e6 / n  # under callgrind, mostly the server's slowness
                ir = f"redis Ir/call {dump() / n:,.0f}  " if dump else ""
                print(f"round {rnd + 1} {label} {kind}: {ir}wall µs/call {wall:.1f}", flush=True)
            app.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--enqueue-batch", type=int, default=1000)
    ap.add_argument("--settle-batch", type=int, default=100)
    ap.add_argument("--backlog", type=int, default=0,
                    help="enqueue this many first, then one chunk per fetch (default: all n first)")
    ap.add_argument("--idle", action="store_true",
                    help="enqueue the next chunk after each settle, not before each fetch (with --backlog: an idle "
                         "fleet, e.g. --enqueue-batch 1 --settle-batch 1 --backlog 1 --idle)")
    ap.add_argument("--inflight", type=int, default=0, metavar="K",
                    help="hold K fetched tasks and settle the oldest --settle-batch of them while the rest are "
                         "pending (settles overlap running tasks, their start times carried: the io-redis pattern)")
    ap.add_argument("--lua", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--add-tasks", type=int, default=0, metavar="N",
                    help="instead: N sync add_task calls (op add, each its own round trip) against N raw redis-py "
                         "XADD round trips, per round (the Redis side of dispatch latency)")
    ap.add_argument("--keep", action="store_true", help="keep the callgrind dumps (for callgrind_annotate)")
    a = ap.parse_args()
    variants = [(v.split("=", 1)[0], Path(v.split("=", 1)[1]).read_text(encoding="utf-8")) for v in a.lua] \
        or [("this tree", HERE.read_text(encoding="utf-8"))]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp(prefix="rtc"))
    cmd = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
           "--save", "", "--appendonly", "no"]
    if a.callgrind:
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    out: dict[str, dict[str, list[Any]]] = {label: {"ir": [], "ir_enq": [], "cpu": [], "calls": []}
                                            for label, _ in variants}
    try:
        r = redis.Redis(port=port)
        for _ in range(600):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        dumps = 0

        def dump() -> int:
            """Dump callgrind's counters (each dump holds what ran since the last one): redis-server's Ir."""
            nonlocal dumps
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            dumps += 1
            text = Path(f"{tmp}/cg.out.{dumps}").read_text(errors="replace")
            return int(next(ln for ln in text.splitlines() if ln.startswith("summary:")).split()[1])

        if a.add_tasks:
            add_tasks(url, r, a.add_tasks, a.rounds, variants, dump if a.callgrind else None,
                      lambda: subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True,
                                             capture_output=True))
            return
        for rnd in range(a.rounds):
            for label, source in variants:
                use_lua(source)
                r.flushall()
                asyncio.run(drain(url, min(500, a.n), a.enqueue_batch, a.settle_batch))  # loads the library
                r.flushall()
                if a.callgrind:
                    subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
                s0, c0 = stats(r), cpu_s(proc.pid)
                enq: list[int] = []
                split = (lambda got=enq: got.append(dump())) if a.callgrind and not a.backlog else None
                asyncio.run(drain(url, a.n, a.enqueue_batch, a.settle_batch, a.backlog, split, a.idle, a.inflight))
                c1, s1 = cpu_s(proc.pid), stats(r)
                if a.callgrind:
                    ir = dump() + sum(enq)
                    out[label]["ir"].append(ir / a.n)
                    if enq:
                        out[label]["ir_enq"].append(enq[0] / a.n)
                out[label]["cpu"].append((c1 - c0) * 1e6 / a.n)
                calls = {k: round((v[0] - s0.get(k, (0, 0))[0]) / a.n, 3) for k, v in s1.items()
                         if v[0] - s0.get(k, (0, 0))[0] and k not in ("info", "flushall", "ping", "hello")}
                out[label]["calls"].append(calls)
                print(f"round {rnd + 1} {label}: " + (f"Ir/task {out[label]['ir'][-1]:,.0f}  " if a.callgrind else "")
                      + f"redis CPU µs/task {out[label]['cpu'][-1]:.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
        if a.keep:
            print(f"callgrind dumps kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nn={a.n} enqueue batch {a.enqueue_batch} settle batch {a.settle_batch} backlog {a.backlog or 'all'}"
          f"{f', in flight {a.inflight}' if a.inflight else ''}, "
          f"{a.rounds} rounds, "
          f"load average {os.getloadavg()[0]:.1f}")
    for label, got in out.items():
        line = f"{label}: "
        if got["ir"]:
            irs = ", ".join(f"{x:,.0f}" for x in got["ir"])
            line += f"Ir/task median {statistics.median(got['ir']):,.0f} ({irs}); "
        if got["ir_enq"]:
            line += (f"of which the enqueue {statistics.median(got['ir_enq']):,.0f} "
                     f"({', '.join(f'{x:,.0f}' for x in got['ir_enq'])}); ")
        line += f"CPU µs/task median {statistics.median(got['cpu']):.2f} ({', '.join(f'{x:.2f}' for x in got['cpu'])})"
        print(line)
        print(f"  commands per task (last round): {got['calls'][-1]}")


if __name__ == "__main__":
    main()
