"""Child-side benchmark driver: ``python -m benchmarks.peers._harness --peer NAME ...``.

Runs inside the peers venv (launched by :mod:`benchmarks.peers.runner`). It
imports exactly one peer adapter, starts that library's workers, runs the
workloads and prints one marker-prefixed JSON line per result on stdout:

    @@PEERS@@ {"type": "meta", ...}
    @@PEERS@@ {"type": "run", "workload": "drain", "repeat": 0, "rate": ..., ...}

Workloads, in this order:

* ``enqueue``: ``n`` one-by-one enqueues of the no-op task, workers *not*
  running (pure producer rate); the db is flushed afterwards.
* ``latency``: workers running and idle; ``calls`` sequential echo round trips,
  each from just before the enqueue call until the result is visible in Redis.
* ``drain``: ``n`` no-op tasks enqueued as fast as the library allows; rate is
  ``n`` / (first enqueue -> last result visible, checked for all ``n``).

Every run is time-boxed; worker process trees are killed on exit (also on
SIGTERM/SIGINT, and via PR_SET_PDEATHSIG should this process be killed hard).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MARK = "@@PEERS@@ "
_OUT = sys.stdout


def emit(obj: dict[str, Any]) -> None:
    _OUT.write(MARK + json.dumps(obj) + "\n")
    _OUT.flush()


def _pdeathsig() -> None:  # runs in the forked child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Workers:
    """The library's worker processes (and their whole process trees)."""

    def __init__(self, commands: list[list[str]], log_dir: Path, peer: str) -> None:
        self.commands = commands
        self.log_dir = log_dir
        self.peer = peer
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for i, cmd in enumerate(self.commands):
            log = self.log_dir / f"{self.peer}-worker{i}.log"
            self.logs.append(log)
            with open(log, "ab") as fh:
                fh.write(f"$ {' '.join(cmd)}\n".encode())
                fh.flush()
                self.procs.append(
                    subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=fh,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_pdeathsig,
                    )
                )

    def dead(self) -> list[str]:
        return [f"worker {i} exited with {p.returncode}" for i, p in enumerate(self.procs) if p.poll() is not None]

    def log_tail(self, chars: int = 600) -> str:
        tails = []
        for log in self.logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            tails.append(text[-chars:].strip())
        return " | ".join(t for t in tails if t)

    def stop(self, grace: float = 5.0) -> None:
        try:
            import psutil
        except ImportError:  # pragma: no cover - psutil is in the peers requirements
            psutil = None
        victims: list[Any] = []
        for p in self.procs:
            if p.poll() is not None:
                continue
            if psutil is not None:
                try:
                    parent = psutil.Process(p.pid)
                    victims.extend(parent.children(recursive=True))
                    victims.append(parent)
                except psutil.NoSuchProcess:
                    continue
            else:
                victims.append(p)
        for v in victims:
            try:
                v.send_signal(signal.SIGTERM)
            except Exception:
                pass
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for v in victims:
            try:
                v.kill()
            except Exception:
                pass
        for p in self.procs:
            try:
                p.wait(2)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()


class Probe:
    """Synchronous completion checks against Redis, identical for every peer."""

    def __init__(self, bench: Any) -> None:
        import redis

        self.bench = bench
        self.r = redis.Redis.from_url(bench.url)

    def done(self, handle: Any) -> bool:
        pipe = self.r.pipeline(transaction=False)
        self.bench.probe(pipe, handle)
        return bool(self.bench.is_done(pipe.execute()[0]))

    def not_done(self, handles: Sequence[Any], chunk: int = 5000, *, check: str = "is_done") -> list[Any]:
        test = getattr(self.bench, check)
        left: list[Any] = []
        for i in range(0, len(handles), chunk):
            part = handles[i : i + chunk]
            pipe = self.r.pipeline(transaction=False)
            for h in part:
                self.bench.probe(pipe, h)
            for h, reply in zip(part, pipe.execute(), strict=True):
                if not test(reply):
                    left.append(h)
        return left

    def flush(self) -> None:
        from ._base import PROTECTED_DBS

        db = int(self.r.connection_pool.connection_kwargs.get("db", 0) or 0)
        if db in PROTECTED_DBS:
            raise RuntimeError(f"refusing to FLUSHDB protected Redis db {db}; give this peer its own db")
        self.r.flushdb()


async def wait_done(probe: Probe, handle: Any, timeout: float) -> bool:
    """Poll one handle until its result is visible: every ~0.1 ms at first, coarser later.

    The short waits are blocking ``time.sleep`` calls: asyncio timers go through
    epoll, whose timeout has 1 ms granularity, which would floor every latency.
    The loop is still yielded to on each iteration.
    """
    start = time.perf_counter()
    while True:
        if probe.done(handle):
            return True
        waited = time.perf_counter() - start
        if waited > timeout:
            return False
        if waited < 0.05:
            time.sleep(0.0001 if waited < 0.005 else 0.0005)
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(0.002)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def run_enqueue(bench: Any, probe: Probe, n: int, timeout: float, rep: int) -> dict[str, Any]:
    await bench.open()
    err = None
    done = 0
    try:
        deadline = time.perf_counter() + timeout
        t0 = time.perf_counter()
        for done in range(1, n + 1):  # noqa: B007 - `done` is read after the loop
            await bench.enqueue("noop")
            if done % 256 == 0 and time.perf_counter() > deadline:
                err = f"timeout after {timeout:.0f}s: {done}/{n} enqueued"
                break
        elapsed = time.perf_counter() - t0
    finally:
        await bench.close()
        probe.flush()
    return {
        "type": "run",
        "workload": "enqueue",
        "repeat": rep,
        "n": done,
        "seconds": elapsed,
        "rate": done / elapsed if elapsed > 0 else None,
        "error": err,
    }


async def run_latency(bench: Any, probe: Probe, calls: int, timeout: float, rep: int) -> dict[str, Any]:
    samples: list[float] = []
    err = None
    gap = float(getattr(bench, "latency_gap", 0.02))
    rng = random.Random(1234 + rep)
    deadline = time.perf_counter() + timeout
    for i in range(calls):
        await asyncio.sleep(rng.uniform(0.0, gap))
        t0 = time.perf_counter()
        h = await bench.enqueue("echo", i)
        if not await wait_done(probe, h, min(30.0, max(1.0, deadline - t0))):
            err = f"call {i}: no result after {time.perf_counter() - t0:.1f}s"
            break
        samples.append((time.perf_counter() - t0) * 1000.0)
        if time.perf_counter() > deadline and i + 1 < calls:
            err = f"timeout after {timeout:.0f}s: {len(samples)}/{calls} calls"
            break
    return {
        "type": "run",
        "workload": "latency",
        "repeat": rep,
        "n": len(samples),
        "samples_ms": [round(s, 4) for s in samples],
        "p50_ms": pct(samples, 0.50) if samples else None,
        "p99_ms": pct(samples, 0.99) if samples else None,
        "rate": None,
        "error": err,
    }


async def run_drain(bench: Any, probe: Probe, n: int, timeout: float, rep: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    handles = await bench.enqueue_many(n)
    t_enq = time.perf_counter()
    deadline = t0 + timeout
    err = None
    # 1) the last enqueued task's result (cheap single probe)
    while not probe.done(handles[-1]):
        if time.perf_counter() > deadline:
            break
        await asyncio.sleep(0.002)
    t_end = time.perf_counter()
    # 2) every result: normally all are already there; otherwise keep waiting for the stragglers
    left = probe.not_done(handles)
    if left:
        while left and time.perf_counter() <= deadline:
            await asyncio.sleep(0.02)
            left = probe.not_done(left)
        t_end = time.perf_counter()
    completed = n - len(left)
    elapsed = t_end - t0
    if left:
        err = f"timeout after {timeout:.0f}s: {completed}/{n} results stored"
    failed = len(probe.not_done(handles, check="is_ok")) - len(left)  # done but not successful
    return {
        "type": "run",
        "workload": "drain",
        "repeat": rep,
        "n": completed,
        "seconds": elapsed,
        "enqueue_s": t_enq - t0,
        "failed": failed,
        "rate": completed / elapsed if elapsed > 0 and completed else None,
        "error": err,
    }


def fail_all(workloads: Sequence[str], repeats: int, msg: str) -> None:
    for w in workloads:
        for rep in range(repeats):
            emit({"type": "run", "workload": w, "repeat": rep, "rate": None, "error": msg})


async def main_async(ns: argparse.Namespace) -> int:
    workloads: list[str] = [w for w in ("enqueue", "latency", "drain") if w in ns.workloads.split(",")]
    try:
        mod = importlib.import_module(f"{__package__}.{ns.peer}")
        bench = mod.Bench()
        version = bench.version()
    except Exception as exc:  # a peer that can't even be imported
        emit({"type": "meta", "peer": ns.peer, "version": None, "error": f"import failed: {exc!r}"})
        fail_all(workloads, ns.repeats, f"import failed: {exc!r}")
        return 3
    emit(
        {
            "type": "meta",
            "peer": ns.peer,
            "version": version,
            "worker": bench.worker_desc,
            "redis": bench.url,
            "python": sys.version.split()[0],
        }
    )
    probe = Probe(bench)
    probe.flush()

    if "enqueue" in workloads:
        for rep in range(ns.repeats):
            try:
                emit(await run_enqueue(bench, probe, ns.n, ns.run_timeout, rep))
            except Exception as exc:
                emit({"type": "run", "workload": "enqueue", "repeat": rep, "rate": None, "error": _fmt(exc)})

    rest = [w for w in workloads if w != "enqueue"]
    if not rest:
        return 0
    workers = Workers(bench.worker_commands(), Path(ns.log_dir), ns.peer)
    try:
        workers.start()
        await bench.open()
        # readiness: the first echo round trip proves a worker consumes; give all processes time to come up
        h = await bench.enqueue("echo", -1)
        if not await wait_done(probe, h, ns.ready_timeout):
            why = "; ".join(workers.dead()) or f"no result within {ns.ready_timeout:.0f}s"
            fail_all(rest, ns.repeats, f"workers not ready: {why}; log: {workers.log_tail()}")
            return 4
        await asyncio.sleep(2.0)
        for i in range(10):
            await wait_done(probe, await bench.enqueue("echo", i), 10.0)

        for w in rest:
            for rep in range(ns.repeats):
                dead = workers.dead()
                if dead:
                    emit(
                        {
                            "type": "run",
                            "workload": w,
                            "repeat": rep,
                            "rate": None,
                            "error": f"{'; '.join(dead)}; log: {workers.log_tail()}",
                        }
                    )
                    continue
                try:
                    if w == "latency":
                        res = await run_latency(bench, probe, ns.latency_calls, ns.run_timeout, rep)
                    else:
                        res = await run_drain(bench, probe, ns.n, ns.run_timeout, rep)
                        await asyncio.sleep(1.0)
                except Exception as exc:
                    res = {"type": "run", "workload": w, "repeat": rep, "rate": None, "error": _fmt(exc)}
                emit(res)
        await bench.close()
    finally:
        workers.stop()
        try:
            probe.flush()
        except Exception:
            pass
    return 0


def _fmt(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{exc!r} at {tb[-2].strip() if len(tb) > 1 else ''}"[:800]


def _on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.peers._harness")
    p.add_argument("--peer", required=True)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workloads", default="enqueue,latency,drain")
    p.add_argument("--latency-calls", type=int, default=200)
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--ready-timeout", type=float, default=90.0)
    p.add_argument("--log-dir", default=os.environ.get("TMPDIR", "/tmp") + "/peers-logs")
    ns = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    return asyncio.run(main_async(ns))


if __name__ == "__main__":
    sys.exit(main())
