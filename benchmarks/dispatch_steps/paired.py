"""Two workers' dispatch latency side by side: a base tree's worker and a head tree's, on one private Redis,
each serving an app of its own, timed by one producer in alternating blocks of 100 ``stamp`` trips
(``add_task`` called -> the body's first line, as the dispatch suite's ``ours: start``).

Why: with several helpers loading the 2 cores (load average 6-8), base and head runs made a minute apart
(``benchmarks.ab``) differ by more than a change of the worker's read path can; trips alternated every 100
within one run see the same machine.

Usage: ``python paired.py BASE_TREE [trips per side per round] [rounds]`` (run with the head tree's python;
the base tree needs its own ``.venv``, e.g. the one ``benchmarks.ab`` builds under ``--work``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HEAD = Path(__file__).resolve().parents[2]


def main() -> None:
    base = Path(sys.argv[1]).resolve()
    trips, rounds = (int(a) for a in (sys.argv[2:] + ["500", "4"])[:2])
    sys.path.insert(0, str(HEAD))
    from qtasks_fast.benchmarks.common import PrivateRedis

    srv = PrivateRedis(Path(tempfile.mkdtemp(prefix="paired-")))
    url = srv.start()
    workers = []
    try:
        from qtasks_fast.benchmarks.apps import make_app
        from qtasks_fast.benchmarks.dispatch import start_trip

        apps = {}
        for side, tree in (("base", base), ("head", HEAD)):
            name = f"paired{side}"
            env = {**os.environ, "QTASKS_BENCH_APP": name, "QTASKS_BROKER_URL": url, "PYTHONPATH": str(tree)}
            workers.append(subprocess.Popen(
                [str(tree / ".venv/bin/python"), "-m", "qtasks_fast", "-A", "qtasks_fast.benchmarks.apps:app", "run",
                 "--processes", "1", "--concurrency", "64"], env=env, cwd=tree,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            apps[side] = make_app(name, url)
        for app in apps.values():
            for _ in range(50):
                start_trip(app)
        for rnd in range(rounds):
            got: dict[str, list[float]] = {s: [] for s in apps}
            for _ in range(max(1, trips // 100)):
                for side, app in apps.items():
                    got[side] += [start_trip(app) for _ in range(100)]
            p50 = {s: sorted(v)[len(v) // 2] * 1e6 for s, v in got.items()}
            print(f"round {rnd + 1}: base {p50['base']:.0f} µs, head {p50['head']:.0f} µs, "
                  f"head/base {p50['head'] / p50['base']:.2f}", flush=True)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            try:
                w.wait(15)
            except subprocess.TimeoutExpired:
                w.kill()
        srv.stop()


if __name__ == "__main__":
    main()
