"""The query side's backend-specific promises (issue 12) that the shared contract cannot state: SQLite answers
filtered pages from indexes (EXPLAIN QUERY PLAN), upgrades a file made before the query side, and both
in-process backends keep a bounded event feed."""

from __future__ import annotations

import copy
import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

import qtasks_fast.backends.memory.state as memory_state
import qtasks_fast.backends.sqlite.control as sqlite_control
from qtasks_fast.abc.query import TaskFilter, TaskQueries
from qtasks_fast.backends import make_backend
from qtasks_fast.backends.sqlite.db import now_ms
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.testing.contract.harness import envelope

PAGE_FILTERS = {
    "none (one walk per status)": TaskFilter(status="new"),
    "status": TaskFilter(status="error"),
    "name": TaskFilter(task_name="add"),
    "name+status+time": TaskFilter(task_name="add", status="success", created_after=1.0, created_before=2.0),
    "created (one walk per status)": TaskFilter(status="success", created_after=1.0, created_before=2.0),
    "status+created": TaskFilter(status="new", created_after=1.0),
}


@pytest.mark.parametrize("label", sorted(PAGE_FILTERS))
@pytest.mark.parametrize("cursor", [None, (1_700_000_000_000, "7f0c")])
def test_sqlite_filtered_page_walks_an_index_in_order(tmp_path: Path, label: str,
                                                      cursor: tuple[int, str] | None) -> None:
    """Name, status and time filters (and the cursor) are index searches read in the page's order: no scan of
    the table, no sort of every match (what keeps a page fast at 1M records)."""
    _, storage = make_backend(f"sqlite:///{tmp_path}/q.sqlite3", "plans", GlobalConfig())
    assert isinstance(storage, SqliteStorage)
    sql, params = storage.page_sql(PAGE_FILTERS[label], cursor, now_ms())
    plan = [row[3] for row in storage.conn.read("EXPLAIN QUERY PLAN " + sql, ("plans", "default", *params, 10))]
    assert len(plan) == 1 and plan[0].startswith("SEARCH records USING INDEX records_"), plan
    if cursor is not None and "created" not in label and "time" not in label:
        assert "(created,uuid)<(?,?)" in plan[0], plan  # the cursor is a range of the index, not a filter


@pytest.mark.asyncio
async def test_sqlite_file_made_before_the_query_side_is_upgraded(tmp_path: Path) -> None:
    """A records table without started/finished/restart_of (an older release's file) gets the columns, the
    indexes and the event triggers on open; its old rows list, new ones are followed."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE records (
            uuid TEXT PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL, task_name TEXT NOT NULL,
            status TEXT NOT NULL, envelope BLOB NOT NULL, created INTEGER NOT NULL, updated INTEGER NOT NULL,
            "returning" BLOB, traceback TEXT, worker_id TEXT, retry_child TEXT, awaited INTEGER NOT NULL DEFAULT 0,
            expires_at INTEGER, deliveries INTEGER NOT NULL DEFAULT 1);""")
    old = envelope()
    db.execute("INSERT INTO records (uuid, app, queue, task_name, status, envelope, created, updated)"
               " VALUES (?, 'old', 'default', 'add', 'success', ?, ?, ?)",
               (old.uuid, msgspec.msgpack.encode(old), now_ms() - 1000, now_ms() - 1000))
    db.commit()
    db.close()
    broker, storage = make_backend(f"sqlite:///{path}", "old", GlobalConfig())
    assert isinstance(storage, TaskQueries)
    new = envelope()
    await broker.enqueue([new], storage)
    page = await storage.list_tasks(["default"], TaskFilter())
    assert [(t.uuid, t.status) for t in page.tasks] == [(new.uuid, "new"), (old.uuid, "success")]
    assert [(e.uuid, e.status) for e in (await storage.events(["default"], None)).events] == [(new.uuid, "new")]


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["memory://", "sqlite:///{tmp_path}/trim.sqlite3"])
async def test_event_feed_keeps_the_last_events_per_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          url: str) -> None:
    """The feed is bounded per queue (EVENTS_KEPT; SQLite trims in the worker's upkeep); ids go on counting,
    so a reader that resumes from a trimmed id gets the oldest kept events, never a skip of newer ones."""
    monkeypatch.setattr(memory_state, "EVENTS_KEPT", 4)
    monkeypatch.setattr(sqlite_control, "EVENTS_KEPT", 4)
    broker, storage = make_backend(url.replace("{tmp_path}", str(tmp_path)), f"trim{time.time_ns()}",
                                   GlobalConfig())
    assert isinstance(storage, TaskQueries)
    envs = [envelope() for _ in range(7)]
    await broker.enqueue(envs[:1], storage)
    first = (await storage.events(["default"], None)).events[0]
    for e in envs[1:]:
        await broker.enqueue([e], storage)
    await broker.enqueue([envelope(queue="other")], storage)
    worker = copy.copy(broker)
    await worker.start("w-0", "w-0", ["default", "other"], storage)
    await worker.trim_indexes()  # type: ignore[attr-defined]
    kept = (await storage.events(["default"], None)).events
    assert [e.uuid for e in kept] == [e.uuid for e in envs[-4:]]
    assert (await storage.events(["default"], first.id)).events == kept
    assert len((await storage.events(["other"], None)).events) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["memory://", "sqlite:///{tmp_path}/flush.sqlite3"])
async def test_event_ids_never_go_back_after_flush_all(tmp_path: Path, url: str) -> None:
    """A live reader that resumes across ``flush_all`` sees the events that follow it (an id handed out again
    would hide them behind its cursor)."""
    broker, storage = make_backend(url.replace("{tmp_path}", str(tmp_path)), f"flush{time.time_ns()}",
                                   GlobalConfig())
    assert isinstance(storage, TaskQueries)
    await broker.enqueue([envelope(), envelope()], storage)
    cursor = (await storage.events(["default"], None)).cursor
    await broker.flush_all(["default"])
    assert (await storage.events(["default"], None)).events == []
    after = envelope()
    await broker.enqueue([after], storage)
    assert [e.uuid for e in (await storage.events(["default"], cursor)).events] == [after.uuid]
