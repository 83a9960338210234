"""core: the compiled dispatch core vs the same ``_core.pyx`` run as pure Python, on identical batches (with the
Redis backend's argument packing, ``backends/redis/_pack.pyx``, compiled and run as Python the same way).

Each variant runs ``qtasks_fast.benchmarks._corebench`` in its own process (``QTASKS_PURE_PYTHON=1``
for pure Python) and reports the best ns per task over several rounds of
``decode_batch`` (a realistic fetch reply), ``settle_args``, ``enqueue_args``,
``encode_envelopes`` and ``run_tasks`` (the worker's per-task loop, ``worker/_run.pyx``: start a no-op
async task in its context, its one step, encode, outcome, the worker's bookkeeping). When valgrind is
installed, the same script runs under
``valgrind --tool=callgrind --toggle-collect=functools_reduce``, which counts only the
measured loops; Ir / (ITERS × BATCH) is instructions per task: exact, and immune to a
noisy machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from qtasks_fast.benchmarks.common import ROOT, Ctx, bench_env

#: ``run_tasks``: the worker's own per-task work for an async task (``worker/_run.pyx``), since session 10
FUNCS = ("decode_batch", "settle_args", "enqueue_args", "encode_envelopes", "run_tasks")
VARIANTS: tuple[tuple[str, dict[str, str]], ...] = (("compiled", {}), ("pure Python", {"QTASKS_PURE_PYTHON": "1"}))


def timed(env: dict[str, str], batch: int, rounds: int, iters: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "qtasks_fast.benchmarks._corebench", str(batch), str(rounds),
                          str(iters)], env=bench_env(**env), cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _callgrind(valgrind: str, env: dict[str, str], batch: int, iters: int, funcs: str, out: Path,
               toggle: bool) -> subprocess.Popen[bytes]:
    cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
    if toggle:
        cmd.append("--toggle-collect=functools_reduce")
    cmd += [sys.executable, "-m", "qtasks_fast.benchmarks._corebench", str(batch), "0", str(iters), funcs]
    return subprocess.Popen(cmd, env=bench_env(**env), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def total_ir(path: Path) -> int:
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"^(?:summary|totals):\s+(\d+)", line)
        if m:
            return int(m.group(1))
    raise ValueError(f"no summary line in {path}")


def _run_jobs(ctx: Ctx, valgrind: str, specs: list[tuple[str, dict[str, str], str, int, bool]],
              batch: int) -> dict[tuple[str, str, int], int]:
    """Run callgrind jobs ``(variant, env, funcs, iters, toggle)``, as many at once as there are CPUs."""
    folder = ctx.out / "callgrind"
    folder.mkdir(parents=True, exist_ok=True)
    width = max(1, os.cpu_count() or 1)
    results: dict[tuple[str, str, int], int] = {}
    queue = list(specs)
    running: list[tuple[tuple[str, str, int], Path, subprocess.Popen[bytes]]] = []
    while queue or running:
        while queue and len(running) < width:
            variant, env, funcs, iters, toggle = queue.pop(0)
            tag = f"{'pure' if env else 'compiled'}.{funcs.replace(',', '+')}.{iters}"
            path = folder / f"callgrind.{tag}.out"
            running.append(((variant, funcs, iters), path, _callgrind(valgrind, env, batch, iters, funcs, path,
                                                                       toggle)))
        key, path, proc = running.pop(0)
        if proc.wait(timeout=900) != 0:
            raise RuntimeError(f"valgrind run {path.name} failed with code {proc.returncode}")
        results[key] = total_ir(path)
    return results


def instructions(ctx: Ctx, valgrind: str, batch: int, iters: int, per_function: bool) -> tuple[dict[str, Any], str]:
    """Instructions per task per variant: ``{variant: {func or 'all': Ir}}`` and how they were counted.

    Counting is limited to the measured loops with ``--toggle-collect=functools_reduce``; when the
    interpreter has no symbol for it (nothing collected), the fallback is Ir(iters) - Ir(0) of whole runs.
    """
    groups = [*FUNCS] if per_function else []
    groups.append(",".join(FUNCS))
    specs = [(name, env, g, iters, True) for name, env in VARIANTS for g in groups]
    res = _run_jobs(ctx, valgrind, specs, batch)
    method = "callgrind --toggle-collect=functools_reduce (only the measured loops)"
    if min(res.values()) < iters * batch:  # symbol not found: nothing was collected
        groups = [",".join(FUNCS)]
        specs = [(name, env, groups[0], k, False) for name, env in VARIANTS for k in (0, iters)]
        full = _run_jobs(ctx, valgrind, specs, batch)
        res = {(name, g, iters): full[(name, g, iters)] - full[(name, g, 0)] for name, _ in VARIANTS for g in groups}
        method = "callgrind, Ir(loops) - Ir(no loops) of whole runs (no functools_reduce symbol to toggle on)"
    out: dict[str, Any] = {name: {} for name, _ in VARIANTS}
    for (name, g, _), ir in res.items():
        out[name]["all" if "," in g else g] = ir / (iters * batch)
    return out, method


def stale_extension() -> str | None:
    """A warning when _core.pyx (or the Redis backend's _pack.pyx, timed here too) is newer than its built
    extension (then 'compiled' runs older code)."""
    import qtasks_fast

    pkg = Path(qtasks_fast.__file__).parent
    for pyx in (pkg / "_core.pyx", pkg / "backends" / "redis" / "_pack.pyx", pkg / "worker" / "_run.pyx"):
        built = sorted(pyx.parent.glob(f"{pyx.stem}.*.so")) + sorted(pyx.parent.glob(f"{pyx.stem}.*.pyd"))
        if pyx.exists() and built and pyx.stat().st_mtime > max(b.stat().st_mtime for b in built):
            return (f"WARNING: {pyx.relative_to(pkg.parent)} is newer than its compiled extension: the two variants "
                    "may run different code; rebuild (pip install -e . --no-build-isolation).")
    return None


def run(ctx: Ctx) -> dict[str, Any]:
    batch = 500
    rounds, iters = (3, 20) if ctx.quick else (9, 200)
    valgrind = None if ctx.args.no_callgrind else shutil.which("valgrind")
    ctx.begin("core", 3 if valgrind else 2)
    res = {}
    for name, env in VARIANTS:
        ctx.step(f"core: timing {name}")
        res[name] = timed(env, batch, rounds, iters)
    notes = []
    if not res["compiled"].get("compiled"):
        notes.append("WARNING: the 'compiled' variant did not load the extension (qtasks_fast._core missing?).")
    stale = stale_extension()
    if stale:
        notes.append(stale)
    ir: dict[str, Any] = {}
    if valgrind:
        ctx.step("core: callgrind")
        cg_batch, cg_iters = 100, (5 if ctx.quick else 20)
        ir, method = instructions(ctx, valgrind, cg_batch, cg_iters, per_function=not ctx.quick)
        notes.append(f"instructions: {method}; batch {cg_batch} × {cg_iters} loops; raw files in callgrind/.")
    else:
        notes.append("instructions per task: skipped (" + ("--no-callgrind" if ctx.args.no_callgrind
                                                             else "valgrind not installed") + ").")
    ctx.end()
    rows = []
    comp, pure = res["compiled"]["ns_per_task"], res["pure Python"]["ns_per_task"]
    irc, irp = ir.get("compiled", {}), ir.get("pure Python", {})

    def row(case: str, key: str, c: float, p: float) -> dict[str, Any]:
        out: dict[str, Any] = {"case": case, "compiled ns/task": c, "pure ns/task": p, "time speed-up": f"{p / c:.2f}×"}
        if ir:
            ci, pi = irc.get(key), irp.get(key)
            out.update({"compiled Ir/task": ci, "pure Ir/task": pi,
                        "Ir ratio": f"{pi / ci:.2f}×" if ci and pi else "-"})
        return out

    for f in FUNCS:
        rows.append(row(f, f, comp[f], pure[f]))
    total_c, total_p = sum(comp.values()), sum(pure.values())
    rows.append(row(f"all {len(FUNCS)} (one task's worth)", "all", total_c, total_p))
    headline: dict[str, Any] = {"ns_compiled": total_c, "ns_pure": total_p, "speedup_time": total_p / total_c}
    if ir and irc.get("all") and irp.get("all"):
        headline.update({"ir_compiled": irc["all"], "ir_pure": irp["all"], "speedup_ir": irp["all"] / irc["all"],
                         "ir_by_function": ir})
    notes.append(f"timing: best of {rounds} rounds × {iters} loops over a batch of {batch} "
                 "(half 'noop' without args, half 'add' with two ints); GC on, as in a worker.")
    return {"params": {"batch": batch, "rounds": rounds, "iters": iters}, "rows": rows, "notes": notes,
            "headline": headline}
