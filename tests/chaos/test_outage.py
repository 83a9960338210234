"""Chaos: a Redis outage during which a worker is SIGKILLed, and a SIGKILLed supervisor.

(a) Redis stops for 15 s (``QTASKS_CHAOS=full``: 60 s) while a pool of two drains tasks, and one
worker is SIGKILLed during the outage: its replacement waits for Redis instead of crash-looping
the supervisor into giving up, and when Redis is back every accepted task finishes.

(b) The supervisor is SIGKILLed mid-drain and restarted at once with the same worker id (what a
service manager does): its old workers get SIGTERM from the kernel, drain and exit within the
drain period, and the new pool waits for their consumer names before taking their messages over,
so no task runs twice because of a leftover process.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest
import redis
from apps.testkit import load_app_copy

from qtasks_fast.backends.redis.control import queue_prefix
from qtasks_fast.backends.redis.storage import parse_record_blob
from tests.chaos.conftest import Tally, count_runs, scale, settle_tally

pytestmark = pytest.mark.chaos

APPS = Path(__file__).resolve().parent.parent / "apps"
CONCURRENCY = 20
SECONDS = 0.05  # each task sleeps this long: 2 x 20 slots drain ~800 tasks/s at best
LONG = 2.0  # the long ones of (b): running at the kill, they keep the old workers draining for a while


def _start(harness, url: str, runs_dir: Path, worker_id: str, **env: str):  # type: ignore[no-untyped-def]
    return harness.start(url, "--concurrency", str(CONCURRENCY), processes=2, worker_id=worker_id, app="chaos_app",
                         env={"CHAOS_RUNS_DIR": str(runs_dir), **env})


def _send(harness, url: str, n: int, long_every: int = 0) -> tuple[list[str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """``n`` tasks of SECONDS each; with ``long_every``, every such one takes LONG instead."""
    m = load_app_copy(APPS / "chaos_app.py", f"chaos_app_{harness.app_name}", harness.app_name, url)
    uuids: list[str] = []
    tags: dict[str, str] = {}
    for start in range(0, n, 1000):
        tasks = m.app.add_tasks([m.work.s(f"t{i}", LONG if long_every and i % long_every == 0 else SECONDS)
                                 for i in range(start, min(n, start + 1000))])
        for i, t in enumerate(tasks, start):
            uuids.append(str(t.uuid))
            tags[str(t.uuid)] = f"t{i}"
    return uuids, tags


def _wait_runs(runs_dir: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(count_runs(runs_dir).values()) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} runs after {timeout}s"
        time.sleep(0.05)


def _tally(t: Tally, harness, client: redis.Redis, uuids: list[str], tags: dict[str, str],  # type: ignore[no-untyped-def]
           runs_dir: Path) -> None:
    st = harness.statuses(client, uuids)
    settle_tally(t, {u: (s.decode() if s is not None else None) for u, s in zip(uuids, st)}, count_runs(runs_dir), tags)
    print(t.line())


def test_redis_outage_with_a_worker_killed_during_it(harness, private_redis, runs_dir: Path,
                                                     chaos_tally: Tally) -> None:
    url = private_redis.url
    outage = float(scale(15, 60))
    n = int(scale(3000, 20000))
    # leases outlast the outage: the survivor's running tasks are not taken over meanwhile
    proc = _start(harness, url, runs_dir, "X", QTASKS_LEASE_SECONDS=str(outage + 30), QTASKS_DRAIN_SECONDS="5")
    harness.wait_ready(proc)
    uuids, tags = _send(harness, url, n)
    _wait_runs(runs_dir, n // 10)

    private_redis.stop()
    down_at = time.monotonic()
    victim = harness.children(proc)[0]
    victim.kill()
    while time.monotonic() - down_at < outage:
        assert proc.poll() is None, f"the supervisor exited during the outage:\n{harness.log(proc)[-4000:]}"
        time.sleep(0.2)
    ran_before = sum(count_runs(runs_dir).values())
    private_redis.start()

    client = redis.Redis.from_url(url)
    harness.wait_final(client, uuids, timeout=float(scale(120, 400)), proc=proc)
    assert proc.poll() is None and len(harness.children(proc)) == 2, harness.log(proc)[-4000:]
    log = harness.log(proc)
    chaos_tally.notes.update(outage_s=outage, ran_before_restart=ran_before, killed_pid=victim.pid,
                             replacement_waited="cannot start: the broker is not available" in log)
    _tally(chaos_tally, harness, client, uuids, tags, runs_dir)
    assert chaos_tally.accepted == n and chaos_tally.finished == n
    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0
    # only what the killed worker held can run twice: its running and finished-but-unsettled tasks
    assert chaos_tally.duplicates <= 2 * CONCURRENCY, chaos_tally.line()
    assert all(s == b"success" for s in harness.statuses(client, uuids))
    # a body that ran twice was delivered twice, and its record says so (Task.deliveries)
    runs = count_runs(runs_dir)
    twice = [u for u in uuids if runs[tags[u]] >= 2]
    prefix = queue_prefix(harness.app_name, "default")
    records = {u: parse_record_blob(client.get(f"{prefix}:t:{u}"), "default") for u in twice}
    chaos_tally.notes.update(ran_twice=len(twice),
                             recorded_redelivered=sum(1 for r in records.values() if r and r.deliveries >= 2))
    assert all(r is not None and r.deliveries >= 2 for r in records.values()), {
        u: r.deliveries if r else None for u, r in records.items()}
    assert "giving up" not in log and "stopping the pool" not in log
    assert chaos_tally.notes["replacement_waited"], "the replacement must have waited for Redis, not crashed"


def test_supervisor_killed_and_restarted_with_the_same_worker_id(harness, private_redis, runs_dir: Path,
                                                                 chaos_tally: Tally) -> None:
    url = private_redis.url
    drain = 3.0
    n = int(scale(2000, 15000))
    proc = _start(harness, url, runs_dir, "K", QTASKS_DRAIN_SECONDS=str(drain))
    harness.wait_ready(proc)
    uuids, tags = _send(harness, url, n, long_every=25)
    _wait_runs(runs_dir, n // 5)

    old = harness.children(proc)
    assert len(old) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    killed_at = time.monotonic()
    # restarted at once, as a service manager would: the old workers may still be draining
    proc2 = _start(harness, url, runs_dir, "K", QTASKS_DRAIN_SECONDS=str(drain))
    _, alive = psutil.wait_procs(old, timeout=drain + 15)
    assert not alive, f"workers of the killed supervisor still run: {[p.pid for p in alive]}"
    orphans_gone_s = round(time.monotonic() - killed_at, 1)

    client = redis.Redis.from_url(url)
    harness.wait_final(client, uuids, timeout=float(scale(90, 300)), proc=proc2)
    log2 = harness.log(proc2)
    chaos_tally.notes.update(orphans_gone_s=orphans_gone_s, new_pool_waited=log2.count("consumer name is held by"))
    _tally(chaos_tally, harness, client, uuids, tags, runs_dir)
    assert chaos_tally.accepted == n and chaos_tally.finished == n
    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0
    # the old workers drained (finished what ran, handed back the rest) while the new ones waited for their
    # consumer names: at most what ran at the kill repeats
    assert chaos_tally.duplicates <= 2 * CONCURRENCY, chaos_tally.line()
    assert proc2.poll() is None
