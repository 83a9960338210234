"""SIGTERM drains a busy pool: it exits 0 within the grace period and loses nothing.

Tasks that finish within the grace period are stored; the ones still running
after it are handed back to the queue, and a pool started later runs them and
everything never fetched.
"""

from __future__ import annotations

import time

GRACE = 2.0


def test_sigterm_under_load_exits_0_in_grace_and_a_second_pool_finishes_everything(harness, redis_url):
    env = {"QTASKS_DRAIN_SECONDS": str(GRACE)}
    proc = harness.start(redis_url, "--concurrency", "50", processes=2, env=env)
    harness.wait_ready(proc)
    m = harness.producer(redis_url)
    client = m.app.storage.conn.sync
    # four tasks that outlive the grace period, then 3000 short ones
    tasks = m.app.add_tasks([m.slow.s(5.0, f"long-{i}") for i in range(4)]
                            + [m.slow.s(0.02, f"short-{i}") for i in range(3000)])
    uuids = [str(t.uuid) for t in tasks]
    deadline = time.monotonic() + 20
    while harness.finished(client) < 100:  # under load: some done, most still queued or running
        assert time.monotonic() < deadline, harness.log(proc)[-3000:]
        time.sleep(0.01)

    proc.terminate()
    t0 = time.monotonic()
    code = proc.wait(GRACE + 20)
    took = time.monotonic() - t0
    log = harness.log(proc)
    assert code == 0, log[-3000:]
    assert took < GRACE + 4, f"drain took {took:.1f}s with a {GRACE}s grace period"
    assert "killing them" not in log
    assert "handing back" in log, log[-3000:]  # the long tasks were cut off and handed back
    assert not harness.children(proc)

    st = harness.statuses(client, uuids)
    assert b"process" not in st, "after a drain no record may claim to be running"
    assert st.count(b"success") < len(uuids), "the drain came too late to test anything"
    # every unfinished message is back in the stream, owned by nobody
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0
    assert client.xlen(harness.stream_key()) == st.count(b"new")

    second = harness.start(redis_url, "--concurrency", "50", processes=2, worker_id="W2")
    harness.wait_final(client, uuids, timeout=60, proc=second)
    records = harness.records(m.app, uuids)
    for i, u in enumerate(uuids):
        tag = f"long-{i}" if i < 4 else f"short-{i - 4}"
        assert records[u].status == "success" and records[u].returning == tag, records[u]
    for u in uuids[:4]:
        assert records[u].worker_id.startswith("W2-")
    assert client.xlen(harness.stream_key()) == 0
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0
    second.terminate()
    assert second.wait(30) == 0
