"""``python -m qtasks_fast.benchmarks.ab --base REV``: a change's before and after, measured in one run.

This machine's speed drifts by ±30 % between minutes, so two benchmark runs made apart
compare the drift more than the code. This builds ``REV`` in a git worktree of its own
(a venv with the compiled core, kept under ``--work`` for the next comparison), then runs
the same suite from both trees in alternation (base, head, base, head, ...), one repeat
each, and reports each round's head/base ratio and their median.

    python -m qtasks_fast.benchmarks.ab --base main --suite drain --rounds 3
    python -m qtasks_fast.benchmarks.ab --base HEAD~3 --suite drain --metric drain:rate_by_processes.2 -- --n 50000
    python -m qtasks_fast.benchmarks.ab --base 5c0ef39 --suite sqlite --rounds 3

The ``sqlite`` suite is one self-contained file (see :data:`STANDALONE`): both sides run this tree's copy of
it, so its base may predate it; its extra arguments are its own (``-- --n 20000 --processes 1,2``).

A metric is ``suite:path`` into that suite's headline in ``summary.json`` (dots between keys).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]  # the git checkout (ab compares two of its revisions)
DEFAULT_METRICS = {"drain": ["drain:rate_by_processes.2", "drain:paired_ratio"],
                   "latency": ["latency:p50_idle_us", "latency:raw_rt_p50_us", "latency:p50_load_us"],
                   "sqlite": ["sqlite:drain_rate_by_processes.1", "sqlite:drain_worker_us_by_processes.1",
                              "sqlite:enqueue_rate", "sqlite:enqueue_producer_us"],
                   "pg": ["pg:enqueue_rate", "pg:drain_rate_by_processes.2"],
                   "pghot": ["pghot:server_cpu_us", "pghot:client_cpu_us", "pghot:claim_us", "pghot:settle_us"]}
#: suites that are one self-contained file run with each side's interpreter: both sides run the HEAD's file
#: (same harness, only the product differs), so a revision that predates the suite can be the base
STANDALONE = {"sqlite": Path("qtasks_fast") / "benchmarks" / "sqlite.py",
              "pghot": Path("qtasks_fast") / "benchmarks" / "pghot.py"}
#: runs a file as ``__main__`` without putting its folder on sys.path (the package's own modules such as
#: ``profile.py`` would shadow the standard library's); the side's tree is the cwd, so its qtasks_fast is imported
RUN_FILE = "import runpy, sys; path = sys.argv.pop(1); sys.argv[0] = path; runpy.run_path(path, run_name='__main__')"


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def build_base(rev: str, work: Path, console: Console) -> Path:
    """A worktree of ``rev`` with a venv that has it installed (compiled core); its python."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    tree = work / commit[:12]
    python = tree / ".venv" / "bin" / "python"
    if python.exists():
        return python
    console.print(f"building {rev} ({commit[:12]}) in {tree} ...")
    if not tree.exists():
        git("worktree", "add", "--detach", str(tree), commit)
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
    res = subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", f"{tree}[test]"], cwd=tree,
                         capture_output=True, text=True)
    if res.returncode:
        raise RuntimeError(f"pip install of {rev} failed:\n{res.stderr[-3000:]}")
    return python


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def metric(summary: dict[str, Any], spec: str) -> float | None:
    suite, _, path = spec.partition(":")
    node: Any = summary.get("headlines", {}).get(suite)
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) else None


def suite_command(python: Path, tree: Path, suite: str, out: Path, extra: list[str]) -> list[str]:
    """The command that runs ``suite`` once (one repeat) with ``python`` in ``tree``, writing into ``out``."""
    if suite in STANDALONE:
        return [str(python), "-c", RUN_FILE, str(ROOT / STANDALONE[suite]), "--repeats", "1", "--out", str(out),
                *extra]
    # revisions before issue 10 kept the benchmarks in a top-level package of their own
    module = "qtasks_fast.benchmarks" if (tree / "qtasks_fast" / "benchmarks").is_dir() else "benchmarks"
    return [str(python), "-m", module, "--suite", suite, "--repeats", "1", "--private-redis", "--out", str(out),
            *extra]


def run_one(python: Path, tree: Path, suite: str, out: Path, extra: list[str]) -> dict[str, Any]:
    subprocess.run(suite_command(python, tree, suite, out, extra), cwd=tree, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "summary.json").read_text())  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.ab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="git revision to compare against (the 'before')")
    p.add_argument("--suite", default="drain", help="benchmark suite(s), as for qtasks-fast bench --suite")
    p.add_argument("--rounds", type=int, default=3, help="base/head pairs, run in alternation (default 3)")
    p.add_argument("--metric", action="append", help="suite:path into summary.json headlines (repeatable); "
                   "default: " + ", ".join(m for ms in DEFAULT_METRICS.values() for m in ms))
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "qtasks-ab",
                   help="where base worktrees and their venvs are kept (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path.cwd() / "ab-results", help="results folder (default: ./ab-results)")
    p.add_argument("extra", nargs="*", help="after --: more arguments for qtasks-fast bench (e.g. --n 50000)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    console = Console(stderr=True)
    try:
        base_python = build_base(args.base, args.work, console)
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        p.error(f"cannot build --base {args.base}: {exc}")
    metrics = args.metric or [m for s in args.suite.split(",") for m in DEFAULT_METRICS.get(s, [])]
    if not metrics:
        p.error(f"no default metric for suite {args.suite!r}: pass --metric suite:path")
    sides = {"base": (base_python, base_python.parent.parent.parent), "head": (Path(sys.executable), ROOT)}
    values: dict[str, dict[str, list[float | None]]] = {m: {"base": [], "head": []} for m in metrics}
    for r in range(args.rounds):
        for side, (python, tree) in sides.items():
            console.print(f"round {r + 1}/{args.rounds}: {side} ({tree})")
            summary = run_one(python, tree, args.suite, args.out / f"{r + 1}-{side}", args.extra)
            for m in metrics:
                values[m][side].append(metric(summary, m))
    table = Table(title=f"head ({git('rev-parse', '--short', 'HEAD')}) vs base ({args.base}), alternated")
    table.add_column("metric", no_wrap=True)
    table.add_column("base per round", justify="right")
    table.add_column("head per round", justify="right")
    table.add_column("head/base per round", justify="right")
    table.add_column("median ratio", justify="right")
    report: dict[str, Any] = {"base": args.base, "head": git("rev-parse", "HEAD"), "rounds": args.rounds,
                              "suite": args.suite, "extra": args.extra, "metrics": {}}
    for m, v in values.items():
        ratios = [h / b for b, h in zip(v["base"], v["head"]) if b and h is not None]
        med = statistics.median(ratios) if ratios else None
        table.add_row(m, " ".join(fmt(x) for x in v["base"]), " ".join(fmt(x) for x in v["head"]),
                      " ".join(f"{x:.2f}" for x in ratios), f"{med:.2f}" if med is not None else "-")
        report["metrics"][m] = {**v, "ratios": ratios, "median_ratio": med}
    Console().print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ab.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
