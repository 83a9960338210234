"""Faults under a PostgreSQL-backed pool (issue 15): a server crash and restart mid-drain, a SIGKILLed worker, a
long lock held by another client. Nothing is lost, the fleet resumes by itself, and a producer gets a clear
``BrokerUnavailable`` while the server is down. Each test runs its own server on a free port (conftest
``PrivatePostgres``), never the shared one."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from typing import Any

import asyncpg
import pytest
from conftest import PrivatePostgres, ProcessHarness

from qtasks_fast.exceptions import BrokerUnavailable


def _count(url: str, app: str, status: str = "success") -> int:
    async def read() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM qtasks_fast.records WHERE app = $1 AND status = $2",
                                           app, status))
        finally:
            await conn.close()

    return asyncio.run(read())


def _wait_count(url: str, app: str, n: int, timeout: float, harness: ProcessHarness, proc: Any) -> None:
    deadline = time.monotonic() + timeout
    while (done := _count(url, app)) < n:
        assert time.monotonic() < deadline, f"{done}/{n} finished\n{harness.log(proc)[-4000:]}"
        time.sleep(0.1)


def _check(m: Any, sent: list[Any], expected: list[Any]) -> None:
    for task, want in zip(sent, expected, strict=True):
        got = m.app.get(task.uuid)
        assert got is not None and got.status == "success" and got.returning == want, got


def test_a_server_crash_mid_drain_loses_nothing_and_producers_get_a_clear_error(
        harness: ProcessHarness, private_pg: PrivatePostgres) -> None:
    url, app = private_pg.url, harness.app_name
    proc = harness.start(url, "--concurrency", "50", processes=2, env={"QTASKS_LEASE_SECONDS": "60"})
    harness.wait_ready(proc)
    m: Any = harness.producer(url)
    before = m.app.add_tasks([m.slow.s(0.01, f"b{i}") for i in range(2000)] + [m.add.s(i, 5) for i in range(500)])
    _wait_count(url, app, 200, 20, harness, proc)
    private_pg.stop("immediate")  # a crash: connections cut mid-transaction, recovery at the next start
    with pytest.raises(BrokerUnavailable, match="PostgreSQL .* not reachable"):
        m.add.add_task(1, 1)
    time.sleep(1.0)
    private_pg.start()
    assert _count(url, app) < 2500, "the crash came too late to test anything"
    after = m.app.add_tasks([m.add.s(i, 1) for i in range(1000)])
    _wait_count(url, app, 3500, 40, harness, proc)
    _check(m, before + after,
           [f"b{i}" for i in range(2000)] + [i + 5 for i in range(500)] + [i + 1 for i in range(1000)])
    log = harness.log(proc)
    assert proc.poll() is None and len(harness.children(proc)) == 2
    assert "exited with code" not in log, "workers must wait the outage out, not crash and get restarted"
    assert "Traceback" not in log
    m.app.close()


def test_a_sigkilled_worker_loses_nothing(harness: ProcessHarness, private_pg: PrivatePostgres) -> None:
    url, app = private_pg.url, harness.app_name
    proc = harness.start(url, "--concurrency", "20", processes=2, env={"QTASKS_LEASE_SECONDS": "2"})
    harness.wait_ready(proc)
    m: Any = harness.producer(url)
    sent = m.app.add_tasks([m.slow.s(0.2, f"t{i}") for i in range(200)])
    _wait_count(url, app, 20, 20, harness, proc)
    harness.children(proc)[0].send_signal(signal.SIGKILL)  # mid-run: its tasks are held by a dead consumer
    _wait_count(url, app, 200, 40, harness, proc)
    _check(m, sent, [f"t{i}" for i in range(200)])
    assert max(m.app.get(t.uuid).deliveries for t in sent) >= 2, "the killed worker's tasks ran again"
    m.app.close()


def test_a_long_lock_by_another_client_only_delays_the_drain(harness: ProcessHarness,
                                                             private_pg: PrivatePostgres) -> None:
    url, app = private_pg.url, harness.app_name
    proc = harness.start(url, processes=2)
    harness.wait_ready(proc)
    m: Any = harness.producer(url)
    first = m.app.add_tasks([m.add.s(i, 0) for i in range(500)])
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        async def lock() -> None:
            conn = await asyncpg.connect(url)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE qtasks_fast.messages IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.05)
            finally:
                await conn.close()

        asyncio.run(lock())

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        late: list[Any] = []
        sender = threading.Thread(target=lambda: late.extend(m.app.add_tasks([m.add.s(i, 1) for i in range(500)])))
        sender.start()  # blocks behind the lock, then goes through
        time.sleep(2.0)
        assert not late, "an enqueue went through an exclusive lock"
    finally:
        release.set()
        holder.join(10)
    sender.join(20)
    _wait_count(url, app, 1000, 30, harness, proc)
    _check(m, first + late, [i for i in range(500)] + [i + 1 for i in range(500)])
    assert proc.poll() is None and "exited with code" not in harness.log(proc)
    m.app.close()
