"""SQLite's fetch writes no task record (issue 12, the query side's cost): a handed-out message is what makes
its task read ``process`` on its consumer, for every reader (get, lists, counts, detail), as on Redis."""

from __future__ import annotations

import copy
import sqlite3
import time
from pathlib import Path

import pytest

from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.backends import make_backend
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.testing.contract.harness import envelope, fetch, success


@pytest.mark.asyncio
async def test_fetch_leaves_the_record_yet_every_reader_says_process(tmp_path: Path) -> None:
    broker, storage = make_backend(f"sqlite:///{tmp_path}/held.sqlite3", "held", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    waiting, run = envelope(), envelope()
    await broker.enqueue([run, waiting], storage)
    worker = copy.copy(broker)
    await worker.start("w-0", "w-0", ["default"], storage)
    (d,), _ = await fetch(worker, 1)
    assert d.envelope is not None and d.envelope.uuid == run.uuid
    # the cost: no record write (and no records_status index move) on the fetch path
    assert storage.conn.read("SELECT status, worker_id, started FROM records WHERE uuid = ?",
                             (run.uuid,)) == [("new", None, None)]
    got = await storage.get(run.uuid, ["default"])
    assert got is not None and got.status == "process" and got.worker_id == "w-0"
    page = await storage.list_tasks(["default"], TaskFilter(status="process"))
    assert [(t.uuid, t.worker_id) for t in page.tasks] == [(run.uuid, "w-0")]
    assert page.tasks[0].started_at is not None
    assert [t.uuid for t in (await storage.list_tasks(["default"], TaskFilter(status="new"))).tasks] == [
        waiting.uuid]
    everything = await storage.list_tasks(["default"], TaskFilter(task_name="add"))
    assert {(t.uuid, t.status) for t in everything.tasks} == {(run.uuid, "process"), (waiting.uuid, "new")}
    assert [t.uuid for t in (await storage.list_tasks(["default"], TaskFilter(worker_id="w"))).tasks] == [run.uuid]
    counts = await storage.count_tasks(["default"], TaskFilter())
    assert (counts["new"], counts["process"]) == (1, 1)
    by_worker = await storage.count_tasks(["default"], TaskFilter(worker_id="w"))
    assert (by_worker["new"], by_worker["process"]) == (0, 1)
    detail = await storage.task_detail(run.uuid, ["default"])
    assert detail is not None and detail.task.status == "process" and detail.started_at is not None
    started = detail.started_at
    await worker.settle([success(d, 3)], storage, [])
    done = await storage.task_detail(run.uuid, ["default"])
    assert done is not None and done.task.status == "success" and done.task.worker_id == "w-0"
    assert done.started_at == started and done.finished_at is not None  # settle keeps the hand-out time


@pytest.mark.asyncio
async def test_released_task_reads_new_again_with_an_event(tmp_path: Path) -> None:
    broker, storage = make_backend(f"sqlite:///{tmp_path}/release.sqlite3", "release", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    env = envelope()
    await broker.enqueue([env], storage)
    worker = copy.copy(broker)
    await worker.start("w-0", "w-0", ["default"], storage)
    ready, _ = await fetch(worker, 1)
    await worker.release(ready)
    got = await storage.get(env.uuid, ["default"])
    assert got is not None and got.status == "new" and got.worker_id is None
    events = (await storage.events(["default"], None)).events
    assert [e.status for e in events] == ["new", "process", "new"]


def test_messages_table_of_an_older_file_gets_the_hand_out_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, queue TEXT NOT NULL,"
               " prio INTEGER NOT NULL, uuid TEXT NOT NULL, body BLOB NOT NULL, consumer TEXT, lease_until INTEGER,"
               " deliveries INTEGER NOT NULL DEFAULT 0)")
    db.commit()
    db.close()
    _, storage = make_backend(f"sqlite:///{path}", "old", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    assert "handed" in {r[1] for r in storage.conn.read("PRAGMA table_info(messages)")}


@pytest.mark.asyncio
async def test_dead_lettered_running_task_names_its_worker(tmp_path: Path) -> None:
    broker, storage = make_backend(f"sqlite:///{tmp_path}/dead.sqlite3", "dead", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    env = envelope()
    await broker.enqueue([env], storage)
    worker = copy.copy(broker)
    await worker.start("w-0", "w-0", ["default"], storage)
    (d,), _ = await fetch(worker, 1)
    await worker.dead_letter([(d, "poison")], storage)
    got = await storage.get(env.uuid, ["default"])
    assert got is not None and got.status == "error" and got.worker_id == "w-0"
    assert (got.traceback or "").startswith("dead-lettered: poison")


@pytest.mark.asyncio
async def test_cancel_of_a_task_whose_worker_is_gone_names_that_worker(tmp_path: Path) -> None:
    broker, storage = make_backend(f"sqlite:///{tmp_path}/gone.sqlite3", "gone", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    env = envelope()
    await broker.enqueue([env], storage)
    worker = copy.copy(broker)
    worker.lease_seconds = 0.001  # its lease runs out at once: the worker counts as gone
    await worker.start("w-0", "w-0", ["default"], storage)
    ready, _ = await fetch(worker, 1)
    assert len(ready) == 1
    time.sleep(0.01)
    assert await broker.cancel(env.uuid, "default", "stop", storage) == "queued"
    got = await storage.get(env.uuid, ["default"])
    assert got is not None and got.status == "cancel" and got.worker_id == "w-0"
