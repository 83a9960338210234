"""``python -m qtasks_fast.benchmarks.feed_fanout --base REV``: the web server's side of SSE fan-out without HTTP:
one :class:`~qtasks_fast.service.feed.Feeds` with ``--followers`` followers of every event (encoded, as the SSE
route follows it), while another process writes ``--tasks`` noop tasks' events (enqueue, fetch, settle: three
events each) to a private ``redis-server``; the CPU seconds of the measuring process per event delivered, for the
package of ``REV`` and of this checkout alternating.

Why: ``web_ab`` times a drain with a whole web server and 100 HTTP clients on the same two cores, which on a busy
machine is noise (drains alone vary 3x); this is the same reader and the same shared frames, measured as the CPU
time of the one process that does them (``time.process_time``), which the machine's other load moves far less.
CPU µs per event are per event delivered to each follower on average (a follower that falls behind reads the
backend itself, as a client would).
``REV`` is exported with ``git archive`` and run with this checkout's compiled modules, as ``web_ab`` does.

    python -m qtasks_fast.benchmarks.feed_fanout --base main --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = "benchfeed"  # the app feed_reader.load writes (the producer)


async def follow(url: str, tasks: int, followers: int, producer: list[str], root: str) -> dict[str, float]:
    from qtasks_fast import QueueTasks
    from qtasks_fast.service.feed import Feeds
    from qtasks_fast.web import sse

    encode = getattr(sse, "encode_raw", None) or sse.encode_events  # this checkout's, or a base's before it
    feeds = Feeds(QueueTasks(APP, broker_url=url), encode=encode)  # type: ignore[arg-type]
    want = 3 * tasks
    seen = [0] * followers

    async def one(i: int) -> None:
        async with contextlib.aclosing(feeds(None).follow("$", encoded=True)) as stream:  # type: ignore[type-var]
            async for batch in stream:
                if isinstance(batch, bytes):
                    seen[i] += batch.count(b"\nevent: task\n")
                    if seen[i] >= want:
                        return

    runs = [asyncio.create_task(one(i)) for i in range(followers)]
    await asyncio.sleep(1.0)  # every follower is on the feed
    cpu, wall = time.process_time(), time.monotonic()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = await asyncio.create_subprocess_exec(*producer, cwd=root, env=env)  # this checkout's writer, both sides
    await proc.wait()
    # then until every follower has every event, or none got one for 2 s (a follower that fell behind the server's
    # memory reads the backend, which keeps ~10,000 events: it may never see the oldest ones)
    last, still = sum(seen), 0.0
    while not all(r.done() for r in runs) and still < 2.0:
        await asyncio.sleep(0.1)
        still = 0.0 if sum(seen) != last else still + 0.1
        last = sum(seen)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall - still
    for r in runs:
        r.cancel()
    await asyncio.gather(*runs, return_exceptions=True)
    delivered = sum(seen) / followers  # events per follower, on average
    return {"cpu_us_per_event": cpu * 1e6 / delivered, "cpu_s_per_s": cpu / wall, "events_per_s": delivered / wall,
            "fewest": min(seen), "written": want}


def child(argv: list[str]) -> None:
    """The measuring process (run from the side's tree: its ``qtasks_fast`` is the one imported)."""
    url, tasks, followers, root, batch = argv[0], int(argv[1]), int(argv[2]), argv[3], int(argv[4])
    producer = [sys.executable, "-c", "import asyncio; from qtasks_fast.benchmarks.feed_reader import load; "
                f"asyncio.run(load({url!r}, {tasks}, {batch}, {batch}))"]
    print(json.dumps(asyncio.run(follow(url, tasks, followers, producer, root))), flush=True)


def main() -> None:
    from qtasks_fast.benchmarks.common import ROOT, PrivateRedis
    from qtasks_fast.benchmarks.web_ab import export

    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.feed_fanout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--followers", type=int, default=100)
    p.add_argument("--batch", type=int, default=1000,
                   help="tasks per enqueue, fetch and settle of the writer (large: events come faster than one "
                   "writer process could make them one round trip at a time)")
    args = p.parse_args()
    trees = {"base": export(args.base, Path(tempfile.mkdtemp(prefix="qtasks-fanout-base-"))), "head": ROOT}
    private = PrivateRedis(Path(tempfile.mkdtemp(prefix="qtasks-bench-fanout-")))
    url = private.start()
    results: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    try:
        for r in range(args.rounds):
            for side in ("base", "head") if r % 2 == 0 else ("head", "base"):
                env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
                if side == "base":
                    env["PYTHONPATH"] = str(trees["base"])
                out = subprocess.run(  # the file run by path: its folder is not put on sys.path
                    [sys.executable, "-c", "import runpy, sys; runpy.run_path(sys.argv[1], run_name='fanout')"
                     "['child'](sys.argv[2:])", __file__, url, str(args.tasks), str(args.followers), str(ROOT),
                     str(args.batch)],
                    env=env, capture_output=True, text=True, check=True, cwd=str(trees[side]))
                got = json.loads(out.stdout.strip().splitlines()[-1])
                results[side].append(got)
                print(json.dumps({"round": r, "side": side, **got}), flush=True)
    finally:
        private.stop()
    for side, rs in results.items():
        us = [x["cpu_us_per_event"] for x in rs]
        print(f"{side}: CPU µs per event delivered to {args.followers} followers: median {statistics.median(us):.2f}"
              f" (rounds {' '.join(f'{u:.2f}' for u in us)}); CPU s per s "
              f"{statistics.median([x['cpu_s_per_s'] for x in rs]):.3f}; events/s "
              f"{statistics.median([x['events_per_s'] for x in rs]):,.0f}")


if __name__ == "__main__":
    main()
