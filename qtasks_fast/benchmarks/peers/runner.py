"""Parent side of the peer comparison (runs in the product venv).

Each peer's benchmark runs as a subprocess of the peers interpreter
(``QTASKS_PEERS_PYTHON``, default ``sys.executable``): ``-m
benchmarks.peers._harness``. Its marker-prefixed JSON lines are collected from
stdout, so a broken or hanging peer only yields error rows. The child is started
in its own session (process group); the whole group, workers included, is
killed when it finishes, times out, or when this process exits.

The child runs from a small shim directory holding an empty ``benchmarks``
package with ``peers`` symlinked to this folder: the peers venv then imports
``benchmarks.peers.<peer>`` without importing ``qtasks_fast`` (not installed there; the peer
modules import each other relatively), and the peer module names (``celery.py``, ``rq.py``...)
never shadow the real libraries.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MARK = "@@PEERS@@ "
WORKLOADS = ("enqueue", "latency", "drain")

#: peer name -> its own Redis db (FLUSHDB only ever touches these)
PEER_DBS: dict[str, int] = {
    "celery": 7,
    "dramatiq": 8,
    "arq": 6,
    "taskiq": 10,
    "rq": 11,
    "saq": 12,
    "streaq": 13,
    "huey": 14,
    "qtasks": 15,
}
PEERS: tuple[str, ...] = tuple(PEER_DBS)
#: never flushed: db 0 is the tests', db 9 the product benchmarks' (qtasks_fast/benchmarks/common.py)
PROTECTED_DBS: frozenset[int] = frozenset({0, 9})

_live_groups: set[int] = set()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _kill_all() -> None:
    for pgid in list(_live_groups):
        _kill_group(pgid)
        _live_groups.discard(pgid)


def peers_python(peer: str | None = None) -> str:
    """The interpreter for ``peer``: ``$QTASKS_PEERS_PYTHON_<PEER>``, else ``$QTASKS_PEERS_PYTHON``, else ours.

    The per-peer override exists because the peers' pins conflict (celery's kombu
    needs redis-py>=6.1 while arq and taskiq-redis pin redis<6), so celery lives in
    a venv of its own.
    """
    if peer:
        own = os.environ.get(f"QTASKS_PEERS_PYTHON_{peer.upper()}")
        if own:
            return own
    return os.environ.get("QTASKS_PEERS_PYTHON") or sys.executable


_redis_base: str | None = None


def redis_base() -> str:
    """``redis://host:port`` of the Redis the peers use (each peer adds its own db number).

    ``$QTASKS_PEERS_REDIS`` wins; else the host of the suite's ``args.redis_url``
    (set by :func:`run`); else 127.0.0.1:6379.
    """
    env = os.environ.get("QTASKS_PEERS_REDIS")
    if env:
        return env.rstrip("/")
    return _redis_base or "redis://127.0.0.1:6379"


def _base_of(url: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _make_shim() -> Path:
    shim = Path(tempfile.mkdtemp(prefix="peers-shim-"))
    pkg = shim / "benchmarks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Shim package for the peers venv (qtasks_fast.benchmarks.peers.runner)."""\n')
    (pkg / "peers").symlink_to(HERE, target_is_directory=True)
    return shim


def _flushdb(db: int) -> None:
    if db in PROTECTED_DBS:
        return
    try:
        import redis

        redis.Redis.from_url(f"{redis_base()}/{db}", socket_timeout=5).flushdb()
    except Exception:
        pass


def _settings(args: Any) -> dict[str, Any]:
    quick = bool(getattr(args, "quick", False))
    n = int(getattr(args, "n", 20000) or 20000)
    repeats = max(1, int(getattr(args, "repeats", 3) or 1))
    calls = int(getattr(args, "latency_calls", 0) or 200)
    run_timeout = float(getattr(args, "peer_timeout", 0) or 300.0)
    if quick:
        n, repeats, calls, run_timeout = min(n, 1000), 1, min(calls, 30), min(run_timeout, 60.0)
    workloads = getattr(args, "workloads", None) or ",".join(WORKLOADS)
    if isinstance(workloads, (list, tuple)):
        workloads = ",".join(workloads)
    wl = [w for w in WORKLOADS if w in str(workloads).split(",")]
    return {"n": n, "repeats": repeats, "calls": calls, "run_timeout": run_timeout, "workloads": wl}


def _pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _select(peers: Any) -> list[str]:
    if not peers:
        return list(PEERS)
    names = peers.split(",") if isinstance(peers, str) else list(peers)
    return [p.strip() for p in names if p.strip()]


def run_peer(
    peer: str,
    s: dict[str, Any],
    *,
    python: str,
    shim: Path,
    log_dir: Path,
    on_result: Any = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one peer's harness; return (meta, per-repeat run records). Never raises for peer failures."""
    db = PEER_DBS.get(peer, 15)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(shim)
    env["QTASKS_PEERS_REDIS_URL"] = f"{redis_base()}/{db}"
    env.pop("PYTHONHOME", None)
    cmd = [
        python,
        "-m",
        "benchmarks.peers._harness",
        "--peer",
        peer,
        "--n",
        str(s["n"]),
        "--repeats",
        str(s["repeats"]),
        "--workloads",
        ",".join(s["workloads"]),
        "--latency-calls",
        str(s["calls"]),
        "--run-timeout",
        str(s["run_timeout"]),
        "--log-dir",
        str(log_dir),
    ]
    runs_per_workload = s["repeats"]
    budget = 150.0 + len(s["workloads"]) * runs_per_workload * (s["run_timeout"] + 15.0)
    meta: dict[str, Any] = {
        "peer": peer,
        "version": None,
        "interpreter": python,
        "loadavg_before": round(os.getloadavg()[0], 2),
    }
    runs: list[dict[str, Any]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    err_log = log_dir / f"{peer}-harness.log"
    try:
        with open(err_log, "wb") as err_fh:
            proc = subprocess.Popen(
                cmd,
                cwd=shim,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err_fh,
                start_new_session=True,
            )
    except OSError as exc:
        meta["error"] = f"cannot start peer python {python!r}: {exc}"
        return meta, runs
    _live_groups.add(proc.pid)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + budget
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                break
            if not line.startswith(MARK):
                continue
            try:
                rec = json.loads(line[len(MARK) :])
            except json.JSONDecodeError:
                continue
            if rec.get("type") == "meta":
                meta.update({k: v for k, v in rec.items() if k != "type"})
            elif rec.get("type") == "run":
                runs.append(rec)
                if on_result is not None:
                    on_result(rec)
    finally:
        if timed_out:
            _kill_group(proc.pid)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait(timeout=5)
        _kill_group(proc.pid)  # stray workers left in the child's group
        _live_groups.discard(proc.pid)
        _flushdb(db)
    meta["loadavg_after"] = round(os.getloadavg()[0], 2)
    if timed_out:
        meta["error"] = f"peer run exceeded its {budget:.0f}s budget and was killed"
    elif proc.returncode not in (0, None) and not runs:
        tail = err_log.read_text(errors="replace")[-800:].strip() if err_log.exists() else ""
        meta.setdefault("error", f"harness exited {proc.returncode}: {tail}")
    return meta, runs


def aggregate(peer: str, meta: dict[str, Any], runs: list[dict[str, Any]], s: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for w in s["workloads"]:
        mine = [r for r in runs if r.get("workload") == w]
        errors = sorted({str(r["error"]) for r in mine if r.get("error")})
        repeat_errors = {str(r.get("repeat")): str(r["error"]) for r in mine if r.get("error")}
        row: dict[str, Any] = {
            "peer": peer,
            "version": meta.get("version"),
            "workload": w,
            "rate": None,
            "p50_ms": None,
            "p99_ms": None,
            "error": None,
            "n": s["n"] if w != "latency" else s["calls"],
            "repeats": len(mine),
            "worker": meta.get("worker"),
            "interpreter": meta.get("interpreter"),
            "loadavg": [meta.get("loadavg_before"), meta.get("loadavg_after")],
        }
        if w == "latency":
            ok = [r for r in mine if r.get("samples_ms") and not r.get("error")]
            samples = [x for r in ok for x in r["samples_ms"]]
            if samples:
                row["p50_ms"] = round(_pct(samples, 0.50), 3)
                row["p99_ms"] = round(_pct(samples, 0.99), 3)
                row["samples"] = len(samples)
                row["runs_p50_ms"] = [round(_pct(r["samples_ms"], 0.5), 3) for r in ok]
        else:
            ok = [r for r in mine if r.get("rate") and not r.get("error")]
            if ok:
                rates = [float(r["rate"]) for r in ok]
                row["rate"] = round(statistics.median(rates), 1)
                row["runs"] = [round(x, 1) for x in rates]
                if w == "drain":
                    row["enqueue_s"] = [round(float(r.get("enqueue_s", 0.0)), 3) for r in ok]
                    row["failed_tasks"] = sum(int(r.get("failed") or 0) for r in mine)
            elif mine:
                partial = [float(r["rate"]) for r in mine if r.get("rate")]
                if partial:
                    row["partial_rate"] = round(statistics.median(partial), 1)
        if not mine:
            errors = [str(meta.get("error") or "no result from the peer harness")]
        if repeat_errors:
            row["repeat_errors"] = repeat_errors
        if errors:
            row["error"] = "; ".join(errors)[:1000]
        elif meta.get("error"):
            row["error"] = str(meta["error"])
        rows.append(row)
    return rows


def run(args: Any, progress: Any = None) -> list[dict[str, Any]]:
    """Run the peer comparison; one row per (peer, workload). Peer failures become ``error`` rows."""
    s = _settings(args)
    peers = _select(getattr(args, "peers", None))
    global _redis_base
    forced = getattr(args, "python", None)
    if getattr(args, "redis_url", None):
        _redis_base = _base_of(str(args.redis_url))
    if getattr(args, "log_dir", None):
        log_dir = Path(args.log_dir)
    elif getattr(args, "out", None):
        log_dir = Path(args.out) / "peers-logs"
    else:
        log_dir = Path(tempfile.mkdtemp(prefix="peers-logs-"))
    total = len(peers) * len(s["workloads"]) * s["repeats"]
    task_id = None
    if progress is not None:
        task_id = progress.add_task("peers", total=total)
    shim = _make_shim()
    rows: list[dict[str, Any]] = []
    try:
        for peer in peers:
            if progress is not None:
                progress.update(task_id, description=f"peers: {peer}")

            def on_result(rec: dict[str, Any]) -> None:
                if progress is not None:
                    progress.advance(task_id)

            if peer not in PEER_DBS:
                meta: dict[str, Any] = {"peer": peer, "version": None, "error": f"unknown peer {peer!r}"}
                runs: list[dict[str, Any]] = []
            else:
                try:
                    python = str(forced or peers_python(peer))
                    meta, runs = run_peer(peer, s, python=python, shim=shim, log_dir=log_dir, on_result=on_result)
                except Exception as exc:  # the harness plumbing itself failed: still an error row
                    meta, runs = {"peer": peer, "version": None, "error": f"runner failed: {exc!r}"}, []
            rows.extend(aggregate(peer, meta, runs, s))
            if progress is not None:
                done = sum(1 for r in runs)
                progress.advance(task_id, max(0, len(s["workloads"]) * s["repeats"] - done))
    finally:
        shutil.rmtree(shim, ignore_errors=True)
    return rows
