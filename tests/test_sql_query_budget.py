"""SQLite and PostgreSQL answer a search by worker, error text or finished time like Redis
(test_redis_query_budget): one request examines only so many records (the storage's ``scan_budget``, set small
here), then says the page is partial, how many it searched, and gives the cursor that searches on; indexed
filters are not cut."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.abc.query import SEARCHED, TaskFilter, TaskPage
from qtasks_fast.testing import WorkerThread

N = 30


@pytest.fixture(params=["sqlite", "postgres"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path}/q.sqlite3"


def seeded(url: str, name: str) -> tuple[QueueTasks, Any]:
    app = QueueTasks(name, broker_url=url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with WorkerThread(app):
        for i in range(N):
            assert app.add_task("add", i, 1, timeout=10) is not None
    assert hasattr(app.storage, "scan_budget")
    return app, app.storage


async def walk(storage: Any, f: TaskFilter) -> list[TaskPage]:
    pages, cursor = [], None
    while True:
        page = await storage.list_tasks(["default"], f, 50, cursor)
        pages.append(page)
        if page.cursor is None:
            return pages
        cursor = page.cursor


async def test_a_search_that_runs_out_of_budget_answers_partial_and_searches_on(sql_url: str, app_name: str) -> None:
    app, storage = seeded(sql_url, app_name)
    every = [t.uuid for t in (await storage.list_tasks(["default"], TaskFilter(), N)).tasks]
    worker = (await storage.list_tasks(["default"], TaskFilter(), 1)).tasks[0].worker_id
    storage.scan_budget = 10 * len(app.queues) * 5  # 10 per queue and status walk
    first = await storage.list_tasks(["default"], TaskFilter(worker_id="nosuch"))
    assert first.tasks == [] and first.partial and first.searched == 10 and first.cursor is not None
    pages = await walk(storage, TaskFilter(worker_id="nosuch"))
    assert [p.searched for p in pages] == [10, 20, None] and all(p.tasks == [] for p in pages)
    assert [t.uuid for p in await walk(storage, TaskFilter(worker_id=worker)) for t in p.tasks] == every
    page = await storage.list_tasks(["default"], TaskFilter(task_name="add"), 25)
    assert not page.partial and [t.uuid for t in page.tasks] == every[:25]
    counts = await storage.count_tasks(["default"], TaskFilter(worker_id=worker))
    assert (counts[SEARCHED], counts["success"]) == (10, 10)
    storage.scan_budget = 10_000
    assert await storage.count_tasks(["default"], TaskFilter(worker_id=worker)) == {
        "new": 0, "process": 0, "success": N, "error": 0, "cancel": 0}
