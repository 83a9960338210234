"""``python -m qtasks_fast.benchmarks.peers --n 20000 --repeats 3 --out DIR``: peers table + JSON + Markdown."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qtasks_fast.benchmarks.peers import PEERS, run

WORKLOAD_ORDER = ("drain", "enqueue", "latency")


def _fmt_rate(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row.get("rate") is not None:
        return f"{row['rate']:,.0f}"
    if row.get("partial_rate") is not None:
        return f"~{row['partial_rate']:,.0f}*"
    return "error" if row.get("error") else "-"


def _fmt_ms(row: dict[str, Any] | None, key: str) -> str:
    if row is None or row.get(key) is None:
        return "error" if row is not None and row.get("error") else "-"
    return f"{row[key]:.2f}"


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["peer"], {})[r["workload"]] = r
    out = []

    def key(peer: str) -> float:
        d = by[peer].get("drain")
        return -(d.get("rate") or 0.0) if d else 0.0

    for peer in sorted(by, key=key):
        w = by[peer]
        version = next((r.get("version") for r in w.values() if r.get("version")), None) or "?"
        lat = w.get("latency")
        out.append(
            [
                peer,
                str(version),
                _fmt_rate(w.get("drain")),
                _fmt_rate(w.get("enqueue")),
                _fmt_ms(lat, "p50_ms"),
                _fmt_ms(lat, "p99_ms"),
            ]
        )
    return out


HEADERS = ["peer", "version", "drain tasks/s", "enqueue tasks/s", "latency p50 ms", "latency p99 ms"]


def errors(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["peer"], r["workload"], str(r["error"])) for r in rows if r.get("error")]


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        "# Peer comparison",
        "",
        f"- date: {info['date']}, host: {info['host']} ({info['cpus']} CPUs), python: {info['python']}",
        f"- n={info['n']} tasks, repeats={info['repeats']}, quick={info['quick']}; rates are medians over repeats, "
        "latency percentiles pool all samples",
        "- drain: n no-op tasks enqueued as fast as the library allows; first enqueue -> every result visible in Redis",
        "- enqueue: one-by-one enqueue rate, workers stopped; latency: sequential echo round trips at idle, "
        "spaced by a random gap (uniform 0-20 ms; arq 0-500 ms, its poll interval)",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADERS) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows)]
    errs = errors(rows)
    if errs:
        lines += ["", "`~N*` = partial rate of a timed-out run.", "", "## Errors", ""]
        lines += [f"- **{p}** {w}: {e.replace('|', '/')}" for p, w, e in errs]
    detail = []
    for r in sorted(rows, key=lambda r: (r["peer"], WORKLOAD_ORDER.index(r["workload"]))):
        vals = r.get("runs") or r.get("runs_p50_ms")
        if vals is None and r.get("partial_rate") is None:
            continue
        what = "p50 ms per repeat" if r["workload"] == "latency" else "tasks/s per repeat"
        extra = f", enqueue phase s: {r['enqueue_s']}" if r.get("enqueue_s") else ""
        partial = f", partial rate {r['partial_rate']}" if r.get("partial_rate") is not None else ""
        load = r.get("loadavg") or []
        loadtxt = f", 1-min loadavg before/after: {load}" if load else ""
        failed = f", tasks done but not successful: {r['failed_tasks']}" if r.get("failed_tasks") else ""
        detail.append(f"- {r['peer']} {r['workload']} (n={r.get('n')}): {what} {vals}{extra}{partial}{failed}{loadtxt}")
    if detail:
        lines += ["", "## Per-run values", ""] + detail
    workers = sorted({(r["peer"], r.get("worker") or "") for r in rows if r.get("worker")})
    if workers:
        lines += ["", "## Worker setups", ""] + [f"- {p}: `{w}`" for p, w in workers]
    return "\n".join(lines) + "\n"


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Peer comparison (2 worker processes each)")
    for i, h in enumerate(HEADERS):
        t.add_column(h, justify="left" if i < 2 else "right")
    for r in table_rows(rows):
        t.add_row(*r)
    console = Console()
    console.print(t)
    for peer, w, e in errors(rows):
        console.print(f"[red]{peer} {w}:[/red] {e}", markup=True, highlight=False, soft_wrap=True)


def merge(paths: Sequence[str], out: Path) -> int:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    infos: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        infos.append({"source": str(path), **data.get("info", {})})
        for row in data.get("results", []):
            merged[(row["peer"], row["workload"])] = row
    rows = list(merged.values())
    first = infos[0] if infos else {}
    info = {
        "date": ", ".join(str(i.get("date")) for i in infos),
        "host": first.get("host"),
        "cpus": first.get("cpus"),
        "python": first.get("python"),
        "n": ", ".join(str(i.get("n")) for i in infos),
        "repeats": ", ".join(str(i.get("repeats")) for i in infos),
        "quick": first.get("quick"),
        "merged_from": infos,
    }
    (out / "peers.json").write_text(json.dumps({"info": info, "results": rows}, indent=2) + "\n")
    (out / "peers.md").write_text(markdown(rows, info))
    print_table(rows)
    print(f"wrote {out / 'peers.json'} and {out / 'peers.md'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.peers", description=__doc__)
    p.add_argument("--n", type=int, default=20000, help="tasks per drain/enqueue run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="n<=1000, 1 repeat, 30 latency calls")
    p.add_argument("--peers", default=None, help=f"comma list (default: all of {','.join(PEERS)})")
    p.add_argument("--workloads", default="enqueue,latency,drain")
    p.add_argument("--latency-calls", type=int, default=200)
    p.add_argument("--peer-timeout", type=float, default=300.0, help="time box of each single run, seconds")
    p.add_argument("--python", default=None, help="peers interpreter (default: $QTASKS_PEERS_PYTHON or this python)")
    p.add_argument(
        "--out",
        default=None,
        help="directory for peers.json / peers.md / logs (default ./peers-<timestamp> in the current directory)",
    )
    p.add_argument(
        "--from-json",
        nargs="+",
        default=None,
        metavar="PEERS_JSON",
        help="run nothing: merge earlier peers.json files (later ones win per peer+workload) into --out",
    )
    args = p.parse_args(argv)

    if args.out is None:
        args.out = str(Path.cwd() / time.strftime("peers-%Y%m%d-%H%M%S"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.log_dir = str(out / "logs")

    if args.from_json:
        return merge(args.from_json, out)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as prog:
        rows = run(args, prog)
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0)),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "peers_python": args.python or os.environ.get("QTASKS_PEERS_PYTHON") or sys.executable,
        "n": args.n if not args.quick else min(args.n, 1000),
        "repeats": args.repeats if not args.quick else 1,
        "quick": args.quick,
        "seconds": round(time.time() - t0, 1),
    }
    (out / "peers.json").write_text(json.dumps({"info": info, "results": rows}, indent=2) + "\n")
    (out / "peers.md").write_text(markdown(rows, info))
    print_table(rows)
    print(f"wrote {out / 'peers.json'} and {out / 'peers.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
