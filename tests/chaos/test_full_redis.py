"""Redis reaches ``maxmemory`` (policy ``noeviction``) in the middle of a drain, then memory is freed.

While Redis refuses writes the workers cannot store results or enqueue, the producer cannot
enqueue: the fleet must wait it out. Producers get ``BrokerFull`` (counted as refused, never
accepted); workers keep their finished outcomes and their leases and retry the settle; no worker
exits and no delivery is charged, so once the filler key is deleted every accepted task finishes,
none runs twice and none is dead-lettered.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from apps.testkit import load_app_copy
from conftest import APPS, PrivateRedis

from chaos.conftest import count_runs, scale, settle_tally
from qtasks_fast import BrokerFull

pytestmark = pytest.mark.chaos

MAXMEMORY = int(scale(32, 128)) * 1024 * 1024  # room for the queued tasks and their results
FILLER = "chaos:filler"


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path, ["--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction"])
    r.start()
    yield r
    r.stop(signal.SIGKILL)


def fill(client: redis.Redis, over: int = 8 * 1024 * 1024) -> None:
    """One filler key that puts Redis ``over`` bytes above its maxmemory.

    Written with the limit lifted for a moment (its own argument would count against it), on a
    connection closed right after (its query buffer would outlive the key).
    """
    size = MAXMEMORY - int(client.info("memory")["used_memory"]) + over
    client.config_set("maxmemory", 0)
    client.set(FILLER, b"x" * size)
    client.config_set("maxmemory", MAXMEMORY)
    client.connection_pool.disconnect()
    with pytest.raises(redis.ResponseError, match="maxmemory"):
        client.set("chaos:probe", b"1")


def test_full_redis_mid_drain_then_freed(harness, small_redis, runs_dir, chaos_tally):
    url = small_redis.url
    m = load_app_copy(APPS / "chaos_app.py", f"chaos_full_{harness.app_name}", harness.app_name, url)
    app, work = m.app, m.work
    client = redis.Redis.from_url(url)

    n = int(scale(4000, 40000))
    tags: dict[str, str] = {}

    def send(first: int, count: int) -> None:
        for t, i in zip(app.add_tasks([work.s(f"t{i}", 0.05) for i in range(first, first + count)]),
                        range(first, first + count), strict=True):
            tags[str(t.uuid)] = f"t{i}"

    send(0, n)
    # a 4 s lease, well inside the hold: only renewals that go on while Redis is full keep the other
    # worker from reclaiming (and charging, and running twice) the tasks waiting for their settle
    proc = harness.start(url, "--concurrency", "32", processes=2, app="chaos_app",
                         env={"CHAOS_RUNS_DIR": str(runs_dir), "QTASKS_LEASE_SECONDS": "4"})
    harness.wait_ready(proc)
    deadline = time.monotonic() + 60
    while harness.finished(client) < n // 10:
        assert time.monotonic() < deadline and proc.poll() is None, harness.log(proc)[-3000:]
        time.sleep(0.01)

    # delayed tasks that fall due while Redis is full: their promotion to the stream is a write too
    for i in range(20):
        t = app.add_task("work", f"d{i}", 0.0, countdown=2)
        tags[str(t.uuid)] = f"d{i}"
    fill(client)
    at_fill = harness.finished(client)
    assert at_fill < n, "the drain ended before Redis was full: nothing was tested"
    # hold it: keep producing (every call is refused), the workers keep trying to settle
    hold = float(scale(10, 30))
    refused = attempts = 0
    sent = n
    end = time.monotonic() + hold
    while time.monotonic() < end:
        attempts += 1
        try:
            send(sent, 20)
            sent += 20
        except BrokerFull as exc:
            assert "maxmemory" in str(exc)
            refused += 20
        time.sleep(0.05)
    during = harness.finished(client)
    assert proc.poll() is None and len(harness.children(proc)) == 2, harness.log(proc)[-3000:]

    redis.Redis.from_url(url).delete(FILLER)  # memory freed: the fleet resumes by itself
    send(sent, 500)  # and producers are accepted again
    sent += 500

    uuids = list(tags)
    harness.wait_final(client, uuids, timeout=float(scale(90, 300)), proc=proc)
    statuses = {u: (s.decode() if s else None) for u, s in zip(uuids, harness.statuses(client, uuids), strict=True)}
    runs = count_runs(runs_dir)
    settle_tally(chaos_tally, statuses, runs, tags)
    log = harness.log(proc)
    chaos_tally.notes.update(refused=refused, refused_calls=attempts, finished_at_fill=at_fill,
                             finished_during_hold=during - at_fill,
                             settle_outages=log.count("cannot store results"),
                             dead_letters=client.xlen(harness.dlq_key()))

    assert "exited with code" not in log, "a worker died while Redis was full"
    assert refused > 0, "the producer was never refused: Redis was not full"
    assert "cannot store results" in log, "no settle was refused: Redis was not full while tasks finished"
    assert "recovered after" in log
    assert chaos_tally.lost == 0 and chaos_tally.stranded == 0
    assert chaos_tally.finished == chaos_tally.accepted == len(tags) == sent + 20
    assert all(s == "success" for s in statuses.values()), "a healthy task did not succeed"
    assert client.xlen(harness.dlq_key()) == 0, "a healthy task was dead-lettered"
    assert chaos_tally.duplicates == 0, f"{chaos_tally.duplicates} tasks ran twice"
    assert all(runs[t] == 1 for t in tags.values())
    assert proc.poll() is None and len(harness.children(proc)) == 2
    proc.terminate()
    assert proc.wait(40) == 0
