"""SIGSTOP past the lease: a frozen pool's messages move to another pool, and the frozen one, thawed,
does not run the prefetched tasks it no longer owns.

Pool A (one process, concurrency 3, a backlog of 3 prefetched, a 2 s lease) is frozen with SIGSTOP while
it runs three slow tasks. Pool B reclaims A's messages once their lease runs out and runs them. A is
thawed after B holds everything A held: only the three tasks A had started may run twice; the backlog
it had prefetched must not run on A at all, and every task finishes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis
from apps.testkit import APPS, load_app_copy
from conftest import PrivateRedis, ProcessHarness

from chaos.conftest import Tally, count_runs, scale, settle_tally

pytestmark = pytest.mark.chaos

LEASE = "2"
CONCURRENCY = 3
PREFETCH = 3  # the worker caps it at its concurrency
SECONDS = 1.0  # each task's sleep


def pending_of(client: redis.Redis, stream: str, group: str) -> dict[str, int]:
    """Consumer name -> entries it holds (XPENDING summary)."""
    try:
        summary = client.xpending(stream, group)
    except redis.ResponseError:
        return {}
    return {c["name"].decode(): int(c["pending"]) for c in summary.get("consumers") or []}


def wait_for(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def test_sigstop_past_the_lease(private_redis: PrivateRedis, harness: ProcessHarness, runs_dir: Path,
                                chaos_tally: Tally) -> None:
    url = private_redis.url
    client = redis.Redis.from_url(url)
    env = {"CHAOS_RUNS_DIR": str(runs_dir), "QTASKS_LEASE_SECONDS": LEASE, "QTASKS_PREFETCH": str(PREFETCH)}
    pool_a = harness.start(url, "--concurrency", str(CONCURRENCY), processes=1, worker_id="A", app="chaos_app",
                           env=env)
    harness.wait_ready(pool_a, 1)
    producer = load_app_copy(APPS / "chaos_app.py", f"chaos_freeze_{harness.app_name}", harness.app_name, url)
    n = int(scale(40, 400))
    tags = [f"t{i}" for i in range(n)]
    sent = producer.app.add_tasks([producer.work.s(tag, SECONDS) for tag in tags])  # type: ignore[attr-defined]
    uuids = [str(t.uuid) for t in sent]
    stream, group = harness.stream_key(), harness.app_name
    held = CONCURRENCY + PREFETCH
    wait_for(f"pool A holds {held} messages", lambda: pending_of(client, stream, group).get("A-0", 0) >= held)

    frozen = [pool_a, *(p for p in harness.children(pool_a))]
    for p in frozen:
        p.send_signal(signal.SIGSTOP)
    try:
        pool_b = harness.start(url, "--concurrency", "8", processes=1, worker_id="B", app="chaos_app",
                               env={**env, "QTASKS_PREFETCH": "0"})
        harness.wait_ready(pool_b, 1)
        # B takes over every message A held once A's leases ran out (A renews nothing while frozen)
        wait_for("pool B reclaimed what pool A held", lambda: pending_of(client, stream, group).get("A-0", 0) == 0,
                 timeout=60)
    finally:
        for p in reversed(frozen):
            p.send_signal(signal.SIGCONT)
    harness.wait_final(client, uuids, timeout=float(scale(90, 600)), proc=pool_b)
    time.sleep(2 * SECONDS)  # A's thawed tasks finish and record their runs (they may run twice, by design)

    runs = count_runs(runs_dir)
    statuses = dict(zip(uuids, [s.decode() if s else None for s in harness.statuses(client, uuids)], strict=True))
    settle_tally(chaos_tally, statuses, runs, dict(zip(uuids, tags, strict=True)))
    twice = sorted(t for t in tags if runs[t] > 1)
    log_a = harness.log(pool_a)
    chaos_tally.notes.update(ran_twice=len(twice), lost_leases_logged=log_a.count("lost the lease"))
    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0, chaos_tally.line()
    assert chaos_tally.finished == chaos_tally.accepted == n, chaos_tally.line()
    assert all(runs[t] >= 1 for t in tags), [t for t in tags if not runs[t]]
    # only what A had started before the freeze may have run twice; its prefetched backlog never
    assert len(twice) <= CONCURRENCY, f"{twice} ran twice: the thawed pool ran tasks it no longer owned"
    assert "lost the lease" in log_a, log_a[-3000:]
