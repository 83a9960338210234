"""``python -m qtasks_fast.benchmarks.web_ab --base REV``: what the web server costs a draining fleet, before and
after a change, in one run.

Why not ``benchmarks.ab``: it runs whole suites, and the web suite first loads 1,000,000 records. This runs only
the web suite's fan-out case (:func:`qtasks_fast.benchmarks.web.fan_out`: a drain alone, then one with
``qtasks-fast web`` serving SSE clients) with the server from ``REV`` and from this checkout in alternation
(base, head, head, base, ...), for summary streams, browser tabs (``tabs``: :data:`web.TABS`, each side's
server getting what its own pages open: ``--main-pages`` says which sides opened every event for a Tasks or task
page) and streams of every event, and reports per side the ratio of the medians (with / alone) and the web
process's CPU seconds per second of drain. Everything but the web server
(workers, clients, harness) is this checkout's. ``REV`` is exported with ``git archive`` (the repository is not
touched) and given this checkout's compiled modules: a base whose ``.pyx`` files differ needs ``ab`` instead.

    python -m qtasks_fast.benchmarks.web_ab --base 7e3ff1b --rounds 5 --n 20000 --clients 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from qtasks_fast.benchmarks.__main__ import build_parser, resolve
from qtasks_fast.benchmarks.common import ROOT, Ctx
from qtasks_fast.benchmarks.web import fan_out


def export(rev: str, into: Path) -> Path:
    """The package as of ``rev`` in ``into`` (git archive), with this checkout's compiled modules."""
    archive = subprocess.run(["git", "archive", rev, "qtasks_fast"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    for so in (ROOT / "qtasks_fast").rglob("*.so"):
        shutil.copy2(so, into / so.relative_to(ROOT))
    return into


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.web_ab", description=__doc__)
    p.add_argument("--base", required=True, help="git revision of the web server to compare against")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=20_000, help="noop tasks per drain")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--kinds", default="summary,tabs,every", help="the clients' streams (web.streams), comma-separated")
    p.add_argument("--main-pages", default="base", choices=("base", "none", "both"),
                   help="the side whose pages opened every event for Tasks and task pages (before watch streams)")
    args = p.parse_args()
    kinds = args.kinds.split(",")
    bench = build_parser().parse_args(["--suite", "web", "--n", str(args.n), "--repeats", "1"])
    resolve(bench)
    out = Path(tempfile.mkdtemp(prefix="qtasks-web-ab-"))
    ctx = Ctx(args=bench, out=out, console=Console(), progress=Progress())
    ctx.begin("web_ab", 2 * len(kinds) * args.rounds * (bench.repeats * 2 + 1))
    trees = {"base": export(args.base, Path(tempfile.mkdtemp(prefix="qtasks-web-ab-base-"))), "head": ROOT}
    runs: dict[str, dict[str, list[float]]] = {}
    for r in range(args.rounds):
        for kind in kinds:
            for side in ("base", "head") if r % 2 == 0 else ("head", "base"):
                f = fan_out(ctx, args.clients, kind, trees[side], main_pages=args.main_pages in (side, "both"))
                d = runs.setdefault(f"{side} {kind}", {"alone": [], "with": [], "web_cpu": []})
                d["alone"] += f["runs alone"]
                d["with"] += f["runs with SSE"]
                d["web_cpu"] += f["runs web CPU"]
                print(json.dumps({"round": r, "side": side, "kind": kind, **f}), flush=True)
    for key, d in sorted(runs.items()):
        ratio = statistics.median(d["with"]) / statistics.median(d["alone"])
        print(
            f"{key}: alone {statistics.median(d['alone']):,.0f} tasks/s, with {statistics.median(d['with']):,.0f}"
            f" (ratio of medians {ratio:.2f}; runs {d['alone']} / {d['with']}); web CPU s per s of drain "
            f"{statistics.median(d['web_cpu']):.3f} (runs {d['web_cpu']})"
        )


if __name__ == "__main__":
    main()
