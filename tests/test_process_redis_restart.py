"""The Redis server restarts under a running pool: workers reconnect and every task completes.

The private redis-server keeps an append-only file (fsync always), so what was
enqueued or acknowledged before the restart survives it. A fetch whose reply is
lost when the connection drops has still handed messages to the worker's
consumer name; the worker must take those back at once, not after the lease.
"""

from __future__ import annotations

import time


def test_workers_survive_a_redis_restart_and_finish_every_task(harness, private_redis):
    url = private_redis.url
    # a 60 s lease: messages whose fetch reply died with the connection must come back at once, not
    # through lease expiry
    proc = harness.start(url, "--concurrency", "50", processes=2, env={"QTASKS_LEASE_SECONDS": "60"})
    harness.wait_ready(proc)
    m = harness.producer(url)
    before = m.app.add_tasks([m.slow.s(0.01, f"b{i}") for i in range(2000)] + [m.add.s(i, 5) for i in range(500)])
    client = m.app.storage.conn.sync
    deadline = time.monotonic() + 20
    while harness.finished(client) < 200:
        assert time.monotonic() < deadline, harness.log(proc)[-3000:]
        time.sleep(0.01)
    done_before = harness.finished(client)

    private_redis.restart()
    client.connection_pool.disconnect()
    assert harness.finished(client) < 2500, "the restart came too late to test anything"
    assert harness.finished(client) >= done_before, "results stored before the restart were lost"
    after = m.app.add_tasks([m.add.s(i, 1) for i in range(2000)] + [m.amul.s(i, 3) for i in range(500)])

    uuids = [str(t.uuid) for t in before + after]
    harness.wait_final(client, uuids, timeout=25, proc=proc)
    records = harness.records(m.app, uuids)
    expected = ([f"b{i}" for i in range(2000)] + [i + 5 for i in range(500)]
                + [i + 1 for i in range(2000)] + [i * 3 for i in range(500)])
    for u, want in zip(uuids, expected, strict=True):
        assert records[u].status == "success" and records[u].returning == want, records[u]

    log = harness.log(proc)
    assert proc.poll() is None and len(harness.children(proc)) == 2
    assert "exited with code" not in log, "workers must reconnect, not crash and get restarted"
    assert client.xlen(harness.stream_key()) == 0
    assert client.xpending(harness.stream_key(), harness.app_name)["pending"] == 0
    proc.terminate()
    assert proc.wait(40) == 0


def test_producers_reconnect_after_a_redis_restart(private_redis):
    """The producer's own connections (enqueue, the wait for a result) were made before the restart:
    the next call goes out on a fresh one instead of failing, for the sync and the async client."""
    import asyncio

    from qtasks_fast import QueueTasks
    from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
    from qtasks_fast.testing import WorkerThread

    url = private_redis.url
    app = QueueTasks("restart_sync", broker_url=url)

    @app.task(name="inc")
    async def inc(x: int) -> int:
        return x + 1

    aapp = AsyncQueueTasks("restart_sync", broker_url=url)
    aapp.task(name="inc")(inc.func)

    async def async_round() -> int:
        task = await aapp.add_task("inc", 10, timeout=10)
        assert task is not None
        return task.returning  # type: ignore[no-any-return]

    loop = asyncio.new_event_loop()
    try:
        with WorkerThread(app):
            assert app.add_task("inc", 1, timeout=10).returning == 2
            assert loop.run_until_complete(async_round()) == 11
        private_redis.restart()
        with WorkerThread(app):
            assert app.add_task("inc", 2, timeout=10).returning == 3
            assert loop.run_until_complete(async_round()) == 11
    finally:
        loop.close()
