"""``--profile``: sample a worker process with py-spy during a drain and summarize where its CPU goes.

py-spy writes collapsed stacks (``--format raw``); the summary ranks functions by
self samples (the frame on top) and by inclusive samples (anywhere on the stack).
Only on-CPU samples are counted (py-spy drops idle threads), so the percentages
are shares of the worker's busy time.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from qtasks_fast.benchmarks.apps import make_app
from qtasks_fast.benchmarks.common import Ctx, WorkerPool, app_keys, unique

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else None


def _frame_key(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: aggregate a function over its lines."""
    frame = _FRAME_LINE.sub(")", frame.strip())
    m = re.match(r"^(.*) \((.*)\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{func} ({short})"


IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "select", "poll", "kevent")


def summarize(raw: Path, top: int = 25) -> tuple[str, dict[str, Any]]:
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        count = int(m["count"])
        frames = [_frame_key(f) for f in m["stack"].split(";") if f]
        if not frames:
            continue
        if frames[-1].split(" (")[0] in IDLE_LEAVES:  # native mode also samples the loop waiting in the kernel
            idle += count
            continue
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl_c[f] += count
    if not total:
        return "no samples (py-spy could not read the process?)\n", {"samples": 0}
    lines = [f"py-spy samples: {total} on-CPU" + (f" ({idle} idle samples in epoll left out)" if idle else ""),
             "", "Top functions by SELF samples:"]
    lines += [f"  {c / total:6.1%}  {c:6d}  {f}" for f, c in self_c.most_common(top)]
    lines += ["", "Top functions by INCLUSIVE samples:"]
    lines += [f"  {c / total:6.1%}  {c:6d}  {f}" for f, c in incl_c.most_common(top + 12)]
    data = {"samples": total, "idle_samples": idle,
            "self": [{"function": f, "share": round(c / total, 4)} for f, c in self_c.most_common(top)],
            "inclusive": [{"function": f, "share": round(c / total, 4)} for f, c in incl_c.most_common(top + 12)]}
    return "\n".join(lines) + "\n", data


def _record(exe: str, pid: int, out: Path, native: bool, log: Path) -> subprocess.Popen[bytes]:
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "-o", str(out), "--rate", "250"]
    # --native shows the Cython core and C frames, but needs to pause the process per sample
    cmd.append("--native" if native else "--nonblocking")
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def profile_drain(ctx: Ctx, n: int) -> dict[str, Any]:
    """Drain ``n`` no-op tasks through one worker process while py-spy samples it, twice.

    First Python frames only, without pausing the worker (shares of its busy time as it
    really runs); then ``--native`` (C, Cython and uvloop frames too), which pauses the
    worker at every sample and so slows it down: read that one for attribution only.
    """
    from qtasks_fast.benchmarks.drain import run_once, warm_up

    exe = py_spy()
    if exe is None:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    name = unique("bp")
    app = make_app(name, ctx.url)
    log = ctx.logs / "py-spy.log"
    parts: list[str] = []
    out: dict[str, Any] = {}
    with app_keys(ctx, name), WorkerPool(ctx, name, 1, concurrency=ctx.args.concurrency, label="profile") as pool:
        warm_up(ctx, app, pool)
        pid = pool.children()[0].pid
        for native in (False, True):
            kind = "native" if native else "python"
            raw = ctx.out / f"profile-worker.{kind}.collapsed.txt"
            rec = _record(exe, pid, raw, native, log)
            time.sleep(1.0)
            if rec.poll() is not None:
                parts.append(f"[{kind}] py-spy exited at once (code {rec.returncode}); see {log}\n")
                continue
            res = run_once(ctx, app, pool, n, ("noop", (), {}))
            rec.send_signal(signal.SIGINT)
            try:
                rec.wait(30)
            except subprocess.TimeoutExpired:
                rec.kill()
            if not raw.exists():
                parts.append(f"[{kind}] py-spy wrote nothing; see {log}\n")
                continue
            text, data = summarize(raw)
            parts.append(f"=== {kind} frames{' (worker paused per sample: slower run)' if native else ''}: "
                         f"worker pid {pid}, drain of {n:,} no-op tasks at {res['rate']:,.0f} tasks/s "
                         f"(1 process; CPU % of a core: worker {res['workers']}, redis {res['redis']}, "
                         f"producer {res['producer']})\n\n{text}")
            out[kind] = {"collapsed": str(raw), "rate": res["rate"], **data}
    summary_file = ctx.out / "profile-worker.txt"
    summary_file.write_text("\n\n".join(parts))
    return {"summary_file": str(summary_file), **out}
