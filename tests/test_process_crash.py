"""A worker process dies under the supervisor: nothing is lost, poison does not spread.

The supervisor restarts a dead worker in the same slot, hence with the same
consumer name, and the replacement's first fetch takes over its predecessor's
unfinished messages at once — not after the lease runs out (the lease here is
60 s, far longer than the test waits). A task that kills its process every time
it runs is dead-lettered after ``max_deliveries`` and takes no other task with it.
"""

from __future__ import annotations

import os
import re
import signal
import time

from apps.testkit import wait_for

STARTED = re.compile(r"started worker (W-\d+) \(pid (\d+)\)")


def worker_pids(log: str) -> dict[str, list[int]]:
    """Slot name -> pids of its incarnations, in start order, from the supervisor's log lines."""
    out: dict[str, list[int]] = {}
    for slot, pid in STARTED.findall(log):
        out.setdefault(slot, []).append(int(pid))
    return out


def wait_statuses(harness, client, uuids, wanted: bytes, timeout: float, proc) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = harness.statuses(client, uuids)
        if all(s == wanted for s in st):
            return
        assert time.monotonic() < deadline, (st, harness.log(proc)[-3000:])
        time.sleep(0.05)


def test_sigkill_of_a_worker_is_taken_over_at_once_by_its_replacement(harness, redis_url):
    proc = harness.start(redis_url, "--concurrency", "20", processes=2,
                         env={"QTASKS_LEASE_SECONDS": "60"})
    harness.wait_ready(proc)
    m = harness.producer(redis_url)
    client = m.app.storage.conn.sync
    tasks = m.app.add_tasks([m.slow.s(2.0, f"tag-{i}") for i in range(40)])
    uuids = [str(t.uuid) for t in tasks]
    wait_statuses(harness, client, uuids, b"process", 10, proc)  # 2 x 20 slots: every task is running now

    holders = {u: r.worker_id for u, r in harness.records(m.app, uuids).items()}
    victim = max(set(holders.values()), key=list(holders.values()).count)
    victim_tasks = [u for u, w in holders.items() if w == victim]
    pid = worker_pids(harness.log(proc))[victim][-1]
    assert pid in [c.pid for c in harness.children(proc)]
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    harness.wait_final(client, uuids, timeout=30, proc=proc)
    took = time.monotonic() - killed_at
    # a takeover through lease expiry could not happen before 60 s
    assert took < 15, f"tasks of the killed worker finished only after {took:.1f}s"

    records = harness.records(m.app, uuids)
    for i, u in enumerate(uuids):
        assert records[u].status == "success", records[u]
        assert records[u].returning == f"tag-{i}"
    for u in victim_tasks:  # rerun by the replacement: same slot, same consumer name
        assert records[u].worker_id == victim
    assert proc.poll() is None, "the supervisor must keep running"
    log = harness.log(proc)
    assert f"worker {victim} (pid {pid}) exited with code -9" in log, log[-3000:]
    pids = worker_pids(log)
    assert len(pids[victim]) == 2 and pids[victim][1] in [c.pid for c in harness.children(proc)]
    assert len(harness.children(proc)) == 2
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0
    assert client.xlen(harness.dlq_key()) == 0
    proc.terminate()
    assert proc.wait(40) == 0


def test_task_that_kills_its_process_is_dead_lettered_and_spares_the_others(harness, redis_url):
    proc = harness.start(redis_url, "--concurrency", "50", "--log-level", "DEBUG", processes=2,
                         env={"QTASKS_LEASE_SECONDS": "60", "QTASKS_MAX_DELIVERIES": "3"})
    harness.wait_ready(proc)
    m = harness.producer(redis_url)
    client = m.app.storage.conn.sync
    # the poison sits in the middle of a batch: the tasks fetched with it must not share its fate
    tasks = m.app.add_tasks([m.add.s(i, 1) for i in range(150)] + [m.suicide.s()]
                            + [m.add.s(i, 2) for i in range(150)])
    poison = str(tasks[150].uuid)
    good = [str(t.uuid) for t in tasks[:150] + tasks[151:]]
    harness.wait_final(client, good + [poison], timeout=60, proc=proc)

    records = harness.records(m.app, good + [poison])
    bad = {u: (records[u].status, records[u].traceback) for u in good if records[u].status != "success"}
    assert not bad, f"{len(bad)} innocent tasks did not succeed, e.g. {next(iter(bad.values()))}"
    assert [records[str(t.uuid)].returning for t in tasks[:150]] == [i + 1 for i in range(150)]
    assert [records[str(t.uuid)].returning for t in tasks[151:]] == [i + 2 for i in range(150)]

    r = records[poison]
    assert r.status == "error"
    assert "dead-lettered" in r.traceback and "max_deliveries=3" in r.traceback, r.traceback
    dlq = client.xrange(harness.dlq_key())
    assert len(dlq) == 1, dlq
    fields = dlq[0][1]
    assert fields[b"u"].decode() == poison
    assert fields[b"reason"] == b"delivered 3 times without finishing (max_deliveries=3)"

    # the supervisor survived three deaths of one slot and still runs two workers that serve tasks
    assert proc.poll() is None
    log = harness.log(proc)
    assert log.count("exited with code -9") == 3, log[-3000:]
    assert len(harness.children(proc)) == 2
    after = m.add.add_task(20, 22, timeout=20)
    assert after is not None and after.returning == 42
    # a waiting caller gets the stored result first; the ack follows in the same settle
    wait_for(lambda: client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0, 5,
             "the last task to be acked")
    proc.terminate()
    assert proc.wait(40) == 0
