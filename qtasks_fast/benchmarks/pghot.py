"""pghot: what a PostgreSQL worker's claim and settle cost, per task, the server's CPU included.

Why this exists: on a 2-core machine shared by the server, the producer and the workers, the drain rate of the
``pg`` suite moves by ±30 % with the load, while the server's CPU per task — what the claim and settle
statements make PostgreSQL do — is what a change to them changes. This suite runs them alone, in one process:
``--n`` tasks enqueued (not timed), then claimed ``--batch`` at a time through ``PgBroker._claim`` and settled
``success`` through ``PgBroker.settle`` (fused storage, as a worker does), timing each side, and reads the CPU
the server's backend processes of this run spent (``/proc/<pid>/stat`` of the backends named by this run's
``application_name``: the server must be on this machine). Every record must end ``success``. The server's CPU
is also read around each claim and each settle (``claim_server_us``, ``settle_server_us``) and over the enqueue
of the tasks in batches of 1,000 (``enqueue_server_us``, not in the clocked part).

Standalone and self-contained, so ``ab`` runs this tree's copy with each side's interpreter and product:
``python -m qtasks_fast.benchmarks.ab --base main --suite pghot --rounds 4``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _backend_cpu(pids: list[int]) -> float:
    """Seconds of CPU the server processes ``pids`` have used (user + system)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # not on this machine, or gone
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def _pids(broker: Any, schema: str) -> list[int]:
    """The server processes of this run's connections (named by ``application_name``)."""
    return [r["pid"] for r in await broker.db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = $1", schema)]


async def _once(url: str, n: int, batch: int) -> dict[str, float]:
    import asyncpg
    import msgspec

    from qtasks_fast._corelib import Delivery
    from qtasks_fast.backends.postgres.broker import PgBroker
    from qtasks_fast.backends.postgres.storage import PgStorage
    from qtasks_fast.schemas import Envelope

    schema = f"qtf_pghot_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in url else "?"
    full = f"{url}{sep}schema={schema}&application_name={schema}"
    broker = PgBroker(full, app_name="pghot")
    storage = PgStorage(full, app_name="pghot", db=broker.db)
    try:
        await broker.start("c1", "w1", ["default"], storage)
        envelopes = [Envelope(uuid=str(uuid.uuid4()), task_name="noop", queue="default", created_at=time.time())
                     for _ in range(n + batch)]
        await broker.enqueue(envelopes[:batch], storage)  # outside the clock: the pool connected, prepared
        pids = await _pids(broker, schema)
        enq0 = _backend_cpu(pids)
        for i in range(batch, n + batch, 1000):
            await broker.enqueue(envelopes[i:i + 1000], storage)
        enqueue_server = _backend_cpu(pids) - enq0
        claim = settle = claim_server = settle_server = 0.0
        done, server0, client0 = -batch, 0.0, 0.0
        while done < n:
            if done == 0:  # after one batch outside the clock: every pool connected, every statement prepared
                claim = settle = 0.0
                claim_server = settle_server = 0.0
                pids = await _pids(broker, schema)
                server0, client0 = _backend_cpu(pids), time.process_time()
            c0 = _backend_cpu(pids)
            t0 = time.perf_counter()
            out, _ = await broker._claim(batch)
            t1 = time.perf_counter()
            c1 = _backend_cpu(pids)
            claim_server += c1 - c0
            outcomes: list[Any] = []
            for queue, flat in out:
                for i in range(0, len(flat), 4):
                    d = Delivery(queue, flat[i], flat[i + 1], flat[i + 2], flat[i + 3])
                    d.envelope = msgspec.msgpack.decode(flat[i + 2], type=Envelope)
                    outcomes.append((d, "success", b"\xc0", "", ""))
            if not outcomes:
                raise RuntimeError(f"claimed nothing with {n - done} tasks left")
            await broker.settle(outcomes, storage, [])
            claim, settle = claim + t1 - t0, settle + time.perf_counter() - t1
            settle_server += _backend_cpu(pids) - c1
            done += len(outcomes)
        server, client = _backend_cpu(pids) - server0, time.process_time() - client0
        ok = await broker.db.fetchval("SELECT count(*) FROM records WHERE status = 'success'")
        if ok != n + batch:
            raise RuntimeError(f"{ok} of {n + batch} records are success")
        return {"claim_us": claim / n * 1e6, "settle_us": settle / n * 1e6, "server_cpu_us": server / n * 1e6,
                "client_cpu_us": client / n * 1e6, "claim_server_us": claim_server / n * 1e6,
                "settle_server_us": settle_server / n * 1e6, "enqueue_server_us": enqueue_server / n * 1e6}
    finally:
        await broker.close()
        await broker.db.close()
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


def measure(url: str, n: int, batch: int, repeats: int) -> dict[str, Any]:
    runs = [asyncio.run(_once(url, n, batch)) for _ in range(repeats)]
    headline = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {"params": {"n": n, "batch": batch, "repeats": repeats}, "runs": runs, "headline": headline}


def main(argv: list[str] | None = None) -> int:
    """Standalone: writes ``pghot.json`` and a ``summary.json`` whose ``headlines.pghot`` ab reads."""
    p = argparse.ArgumentParser(prog="python -m qtasks_fast.benchmarks.pghot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg-url", default=os.environ.get("QTASKS_BENCH_PG_URL", DEFAULT_URL), help="the server")
    p.add_argument("--n", type=int, default=10_000, help="tasks per run (default 10000)")
    p.add_argument("--batch", type=int, default=100, help="tasks per claim (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="runs, median taken (default 3)")
    p.add_argument("--out", type=Path, default=Path.cwd() / "bench-pghot", help="results folder")
    args = p.parse_args(argv)
    result = measure(args.pg_url, args.n, args.batch, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pghot.json").write_text(json.dumps({"suite": "pghot", **result}, indent=1))
    (args.out / "summary.json").write_text(json.dumps({"headlines": {"pghot": result["headline"]}}, indent=1))
    print(json.dumps(result["headline"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
