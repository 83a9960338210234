"""A locked SQLite file (another connection holds the write lock) is a wait, never a frozen loop or a crash."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid as _uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qtasks_fast import BrokerUnavailable, GlobalConfig, QueueTasks
from qtasks_fast.backends.sqlite import db as sqlite_db
from qtasks_fast.backends.sqlite.broker import SqliteBroker, SqliteConnection
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.faults import transient
from qtasks_fast.schemas import Envelope
from qtasks_fast.testing import WorkerThread

HOLD = 3.0  # seconds the other connection keeps the write lock
BEAT = 0.05


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process's long write transaction: ``BEGIN EXCLUSIVE`` on its own connection."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("COMMIT")
        other.close()


def test_a_locked_database_does_not_freeze_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT", 0.5)  # the lock outlasts a producer's patience: a worker waits
    path = tmp_path / "q.sqlite3"
    app = QueueTasks(f"lock{_uuid.uuid4().hex[:8]}", broker_url=f"sqlite:///{path}", config=GlobalConfig())

    @app.task
    async def work(i: int) -> int:
        await asyncio.sleep(0.05)
        return i

    beats: list[float] = []

    async def heartbeat() -> None:  # runs on the worker's event loop: it stops if the loop is blocked
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(BEAT)

    worker = WorkerThread(app, concurrency=4)
    with worker:
        asyncio.run_coroutine_threadsafe(heartbeat(), worker._loop)
        assert app.wait(app.add_task(work.s(-1)).uuid, 20).returning == -1  # type: ignore[union-attr]
        tasks = app.add_tasks([work.s(i) for i in range(40)])
        with write_lock(path):  # the worker's fetches and settles now wait for the lock
            before = len(beats)
            time.sleep(HOLD)
            during = len(beats) - before
        deadline = time.monotonic() + 30
        done = [app.wait(t.uuid, max(0.1, deadline - time.monotonic())) for t in tasks]
    # a loop blocked in SQLite's busy handler would not beat at all while the lock is held
    assert during >= HOLD / BEAT / 6, f"the worker's event loop stalled while the database was locked ({during} beats)"
    assert [(d.status, d.returning) for d in done] == [("success", i) for i in range(40)]  # type: ignore[union-attr]


def test_a_lock_is_reported_as_a_lock_not_as_an_unwritable_directory(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "q.sqlite3"
    SqliteConnection(str(path)).read("SELECT 1")  # the file and its schema exist
    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT", 0.5)
    env = Envelope(uuid=str(_uuid.uuid4()), task_name="t", args=[], queue="default", created_at=time.time())
    with write_lock(path):
        conn = SqliteConnection(str(path))  # a process opening the file while another one writes
        broker = SqliteBroker(str(path), connection=conn)
        asyncio.run(broker.ping())  # opening reads only: usable while the lock is held
        with pytest.raises(BrokerUnavailable) as err:  # an outage by the rule (qtasks_fast.abc.broker): retry later
            broker.enqueue_sync([env], SqliteStorage(str(path), connection=conn))
    assert "locked" in str(err.value) and "directory" not in str(err.value), str(err.value)
    assert transient(err.value) and not isinstance(err.value, sqlite3.Error)
    broker.enqueue_sync([env], SqliteStorage(str(path), connection=conn))  # and works once it is released
