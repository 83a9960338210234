"""What every suite shares: the run context, machine facts, worker pools, Redis helpers, stats and output.

A suite is a module with ``run(ctx) -> dict`` returning
``{"rows": [...], "notes": [...], "params": {...}, "headline": {...}}``;
``__main__`` writes it as ``<suite>.json`` and ``<suite>.md`` and prints its table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata as md
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from rich.console import Console
from rich.progress import Progress, TaskID

from qtasks_fast.backends.redis.storage import parse_record_blob

#: the directory holding the qtasks_fast package: on PYTHONPATH of the benchmark's subprocesses, so they run
#: this very tree (a source checkout or an installed package alike)
ROOT = Path(__file__).resolve().parents[2]
FINAL = (b"success", b"error", b"cancel")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
#: commands the benchmark itself sends while measuring (verification, stats, cleanup): not the product's cost
OWN_COMMANDS = frozenset({"get", "mget", "info", "scan", "unlink", "xinfo|groups", "xinfo|consumers", "ping"})


from qtasks_fast.benchmarks.report import columns_of, fmt, markdown_table, rich_table, try_plot, write_suite  # noqa: E402,F401


# --------------------------------------------------------------------------- context
@dataclass
class Ctx:
    """One benchmark run: options, output folder, progress bar and the results gathered so far."""

    args: argparse.Namespace
    out: Path
    console: Console
    progress: Progress
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    suite: str = ""
    _task: TaskID | None = None

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    @property
    def n(self) -> int:
        return int(self.args.n)

    @property
    def repeats(self) -> int:
        return int(self.args.repeats)

    @property
    def url(self) -> str:
        return str(self.args.redis_url)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def begin(self, suite: str, steps: int) -> None:
        self.suite = suite
        self._task = self.progress.add_task(suite, total=max(steps, 1))

    def step(self, what: str = "", advance: float = 1) -> None:
        if self._task is not None:
            self.progress.update(self._task, advance=advance, description=what or None)

    def end(self) -> None:
        if self._task is not None:
            task = self.progress.tasks[self._task]
            self.progress.update(self._task, completed=task.total)
            self._task = None

    def note(self, msg: str) -> None:
        self.progress.console.print(f"[dim]{msg}[/dim]")

    @property
    def logs(self) -> Path:
        p = self.out / "logs"
        p.mkdir(parents=True, exist_ok=True)
        return p


def unique(prefix: str) -> str:
    """A fresh app/stream name, so runs never see each other's keys on a shared Redis."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- facts
def machine_info() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    affinity: list[int] | None = None
    with contextlib.suppress(AttributeError, psutil.Error):
        affinity = psutil.Process().cpu_affinity()
    return {
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_affinity": len(affinity) if affinity is not None else None,
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def versions() -> dict[str, Any]:
    from qtasks_fast import __version__
    from qtasks_fast._corelib import COMPILED

    return {
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "qtasks_fast": __version__,
        "compiled_core": COMPILED,
        "redis_py": _version("redis"),
        "hiredis": _version("hiredis"),
        "msgspec": _version("msgspec"),
        "uvloop": _version("uvloop"),
        "psutil": _version("psutil"),
        "rich": _version("rich"),
        "matplotlib": _version("matplotlib"),
    }


def redis_info(url: str) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    info = r.info("server")
    out: dict[str, Any] = {"url": redact(url), "version": info.get("redis_version"),
                           "mode": info.get("redis_mode"), "io_threads": None}
    for key in ("appendonly", "appendfsync", "save", "io-threads", "maxmemory"):
        try:
            res = r.config_get(key)
            out[key.replace("-", "_")] = res.get(key)
        except redis.ResponseError:
            out[key.replace("-", "_")] = "unavailable (CONFIG disabled)"
    save, aof = out.get("save"), out.get("appendonly")
    out["persistence"] = ("AOF " + str(out.get("appendfsync")) if aof == "yes" else "no AOF") + \
        (f", RDB save '{save}'" if save else ", no RDB snapshots")
    return out


def redact(url: str) -> str:
    from qtasks_fast.url import redact as _redact

    return _redact(url)


def git_state() -> dict[str, Any]:
    """Commit and uncommitted files of the tree the product was imported from."""
    import qtasks_fast

    top = Path(qtasks_fast.__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "qtasks_fast")
    return {"tree": str(top), "commit": git("rev-parse", "HEAD"),
            "product_files_modified": dirty.splitlines() if dirty else []}


def run_meta(argv: Sequence[str]) -> dict[str, Any]:
    return {
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m qtasks_fast.benchmarks " + " ".join(_quote(a) for a in argv),
        "sys_argv": list(sys.argv),
        "cwd": os.getcwd(),
        "git": git_state(),
    }


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# --------------------------------------------------------------------------- stats
def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """``q`` in 0..100 over already sorted values (nearest-rank with interpolation)."""
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return sorted_values[int(k)]
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def ratio(value: float | None, ref: float | None) -> float | None:
    if value is None or ref is None or not ref or math.isnan(value) or math.isnan(ref):
        return None
    return value / ref


def pct(r: float | None) -> str:
    return "n/a" if r is None else f"{r * 100:.0f}%"


# --------------------------------------------------------------------------- redis helpers
def cleanup_prefix(r: redis.Redis, pattern: str) -> int:
    """UNLINK every key matching ``pattern`` (SCAN, never KEYS/FLUSHDB: the Redis is shared)."""
    n = 0
    batch: list[bytes] = []
    for key in r.scan_iter(match=pattern, count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            n += int(r.unlink(*batch))
            batch = []
    if batch:
        n += int(r.unlink(*batch))
    return n


def cleanup_app(r: redis.Redis, app_name: str) -> int:
    return cleanup_prefix(r, f"qtf:{{{app_name}:*")


def record_key(app_name: str, uuid_: str, queue: str = "default") -> str:
    return f"qtf:{{{app_name}:{queue}}}:t:{uuid_}"


def stream_key(app_name: str, prio: int = 0, queue: str = "default") -> str:
    return f"qtf:{{{app_name}:{queue}}}:s:{prio}"


def wait_finished_count(r: redis.Redis, app_name: str, n: int, timeout: float, poll: float = 0.002) -> bool:
    """Block until the app's finished-task counters (P:count) reach ``n``: one cheap HVALS per poll.

    Used as the completion signal while CPU is metered, so that checking for completion does
    not itself load the machine; the records are verified afterwards.
    """
    key = f"qtf:{{{app_name}:default}}:count"
    deadline = time.monotonic() + timeout
    while sum(int(v) for v in r.hvals(key)) < n:  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def wait_all_final(r: redis.Redis, app_name: str, uuids: Sequence[str], timeout: float,
                   poll: float = 0.02) -> tuple[float, dict[str, int]]:
    """Wait until every record is final; return (time of the last stored result, statuses count).

    The time is the newest record ``u`` (updated, ms, written by the worker's settle), so the
    result does not depend on how often this loop polls.
    """
    deadline = time.monotonic() + timeout
    pending = list(uuids)
    last_u = 0
    counts: dict[str, int] = {}
    while True:
        still: list[str] = []
        for i in range(0, len(pending), 5000):
            chunk = pending[i:i + 5000]
            for u, blob in zip(chunk, r.mget([record_key(app_name, u) for u in chunk]), strict=True):
                task = parse_record_blob(blob, "default") if isinstance(blob, bytes) else None
                if task is not None and task.finished:
                    counts[task.status] = counts.get(task.status, 0) + 1
                    last_u = max(last_u, int(task.updated_at.timestamp() * 1000))
                else:
                    still.append(u)
        pending = still
        if not pending:
            return last_u / 1000, counts
        if time.monotonic() > deadline:
            counts["unfinished"] = len(pending)
            return last_u / 1000, counts
        time.sleep(poll)


def wait_group_drained(r: redis.Redis, stream: str, group: str, timeout: float) -> float | None:
    """For a mode without records: wait until the group has read and acked everything; return that time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for g in r.xinfo_groups(stream):
            if g["name"].decode() == group and not g["pending"] and not g.get("lag"):
                return time.time()
        time.sleep(0.002)
    return None


# --------------------------------------------------------------------------- worker pools
class WorkerPool:
    """``python -m qtasks_fast -A qtasks_fast.benchmarks.apps:app run`` in a subprocess, for one app name."""

    def __init__(self, ctx: Ctx, app_name: str, processes: int, *, concurrency: int | None = None,
                 pin_cpus: bool = False, env: dict[str, str] | None = None, label: str = "") -> None:
        self.ctx, self.app_name, self.processes = ctx, app_name, processes
        self.concurrency, self.pin_cpus, self.extra_env = concurrency, pin_cpus, env or {}
        self.worker_id = unique("w")
        self.label = label or f"{app_name}-p{processes}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ctx.logs / f"workers-{self.label}.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "qtasks_fast", "-A", "qtasks_fast.benchmarks.apps:app", "run",
               "--processes", str(self.processes), "--worker-id", self.worker_id]
        if self.concurrency:
            cmd += ["--concurrency", str(self.concurrency)]
        if self.pin_cpus:
            cmd.append("--pin-cpus")
        return cmd

    def start(self, timeout: float = 30.0) -> WorkerPool:
        env = dict(os.environ)
        env.update({"QTASKS_BENCH_APP": self.app_name, "QTASKS_BROKER_URL": self.ctx.url,
                    "QTASKS_LOG_LEVEL": "INFO",  # per-task lines are DEBUG; INFO has the "serving" line we wait for
                    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)})
        env.update(self.extra_env)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Every worker process has connected and is about to fetch.

        Redis before 7.2 lists a consumer only once it was handed a message, so the
        signal is the worker's "serving queues" log line (and, on newer Redis, the group's consumer list).
        """
        r = self.ctx.redis()
        stream = stream_key(self.app_name)
        wanted = {f"{self.worker_id}-{s}" for s in range(self.processes)}
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker pool exited with code {self.proc.returncode}; see {self.log_path}")
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                text = f.read().decode(errors="replace")
            serving = {w for w in wanted if f"worker {w} serving" in text}
            if serving == wanted:
                return
            with contextlib.suppress(redis.ResponseError):
                names = {c["name"].decode() for c in r.xinfo_consumers(stream, self.app_name)}
                if wanted <= names:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.processes} workers not ready after {timeout}s; see {self.log_path}")
            time.sleep(0.02)

    def children(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def all_processes(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return [psutil.Process(self.proc.pid), *self.children()]
        return []

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for c in self.children():
                with contextlib.suppress(psutil.NoSuchProcess):
                    c.kill()
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        self.proc = None
        return code

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def app_keys(ctx: Ctx, app_name: str) -> Iterator[None]:
    """Delete the app's keys afterwards, even when the case failed."""
    try:
        yield
    finally:
        cleanup_app(ctx.redis(), app_name)


def cpu_percent(procs: Sequence[psutil.Process], seconds: float) -> float:
    """Total CPU% (100 = one core busy) of ``procs`` over ``seconds``."""
    t0 = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t0[p.pid] = sum(p.cpu_times()[:2])
    start = time.monotonic()
    time.sleep(seconds)
    spent = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.pid in t0:
                spent += sum(p.cpu_times()[:2]) - t0[p.pid]
    return 100.0 * spent / (time.monotonic() - start)


def rss_mib(procs: Sequence[psutil.Process]) -> float:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def bench_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def spawn_module(module: str, args: Sequence[str], *, env: dict[str, str] | None = None,
                 stderr_to: Path | None = None, tree: Path | None = None) -> subprocess.Popen[bytes]:
    """``python -m <module> <args>`` with the repo importable (``tree``: another checkout's copy of the package
    instead, for a before/after in one run); stdout piped, stderr to a log file."""
    err = open(stderr_to, "ab") if stderr_to else subprocess.DEVNULL  # noqa: SIM115
    env = env or bench_env()
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=tree or ROOT,
                            stdout=subprocess.PIPE, stderr=err)


def noop_blob(app_name: str = "ceiling") -> tuple[str, bytes]:
    """A real envelope of the ``noop`` task as the product encodes it (so raw entries have the same size)."""
    from qtasks_fast import _corelib as core
    from qtasks_fast.schemas import Envelope

    env = Envelope(uuid=str(uuid.uuid4()), task_name="noop", created_at=time.time())
    return env.uuid, core.encode(env)


class CpuMeter:
    """CPU seconds spent by groups of processes between ``start()`` and ``stop()``, as % of one core."""

    def __init__(self, groups: dict[str, Sequence[psutil.Process]]) -> None:
        self.groups = groups
        self._t0: dict[str, float] = {}
        self._wall = 0.0

    @staticmethod
    def _cpu(procs: Sequence[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def start(self) -> CpuMeter:
        self._t0 = {k: self._cpu(v) for k, v in self.groups.items()}
        self._wall = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """``{group: % of one core}`` plus ``{group + "_s": CPU seconds}``."""
        wall = time.monotonic() - self._wall
        spent = {k: self._cpu(v) - self._t0[k] for k, v in self.groups.items()}
        return {**{k: round(100 * s / wall, 1) for k, s in spent.items()}, **{f"{k}_s": s for k, s in spent.items()}}


def redis_process(url: str) -> list[psutil.Process]:
    """The redis-server process when it runs on this machine (for CPU accounting), else nothing."""
    try:
        pid = int(redis.Redis.from_url(url).info("server")["process_id"])
        proc = psutil.Process(pid)
        return [proc] if "redis" in proc.name() else []
    except (psutil.Error, KeyError, ValueError, redis.RedisError):
        return []


def command_stats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` from INFO commandstats (server-wide: other clients count too)."""
    out = {}
    for key, val in r.info("commandstats").items():
        if isinstance(val, dict):
            out[key.removeprefix("cmdstat_")] = (int(val.get("calls", 0)), int(val.get("usec", 0)))
    return out


def command_cost(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
                 n: int) -> dict[str, dict[str, float]]:
    """Per task: calls and server µs of each command between two snapshots, most expensive first.

    Commands a Lua script runs are counted under their own name and inside EVAL/EVALSHA as well.
    """
    rows = {}
    for cmd, (calls, usec) in after.items():
        if cmd in OWN_COMMANDS:
            continue
        c0, u0 = before.get(cmd, (0, 0))
        if usec - u0 > 0 or calls - c0 > 0:
            rows[cmd] = {"calls/task": round((calls - c0) / n, 3), "µs/task": round((usec - u0) / n, 3)}
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["µs/task"]))


class PrivateRedis:
    """``--private-redis``: a redis-server of our own on a free port, no persistence, stopped at the end.

    It keeps other clients of the shared Redis out of the Redis CPU and command-stats columns
    (the CPU cores stay shared with whatever else runs on the machine).
    """

    def __init__(self, workdir: Path) -> None:
        import shutil
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self.url
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"private redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
