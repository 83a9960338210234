"""A filter no index narrows (worker, error text, finished time) is searched record by record on Redis; one
request examines only so many records (so a dashboard search never holds the broker for seconds) and says so:
a partial page with the matches found so far, a cursor that searches on, and how far it got. Indexed filters
answer as before. The budget is set small here (``RedisStorage.scan_budget``), as a test hook."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from test_redis_query import Backend

from qtasks_fast.abc.query import SEARCHED, TaskFilter, TaskPage
from qtasks_fast.backends.redis.storage import RedisStorage

N = 60


@pytest_asyncio.fixture
async def seeded(redis_url: str, app_name: str) -> AsyncIterator[tuple[RedisStorage, list[str]]]:
    """``N`` finished ``add`` tasks run by worker ``w-0``, newest last."""
    b = Backend(redis_url, app_name)
    uuids = await b.run(N)
    yield b.storage, uuids
    await b.close()


async def walk(storage: RedisStorage, f: TaskFilter, limit: int = 50) -> list[TaskPage]:
    pages, cursor = [], None
    while True:
        page = await storage.list_tasks(["default"], f, limit, cursor)
        pages.append(page)
        if page.cursor is None:
            return pages
        cursor = page.cursor


async def test_a_search_that_runs_out_of_budget_answers_partial_and_its_cursor_searches_on(
        seeded: tuple[RedisStorage, list[str]]) -> None:
    storage, uuids = seeded
    storage.scan_budget = 10
    first = await storage.list_tasks(["default"], TaskFilter(worker_id="nosuch"))
    assert first.tasks == [] and first.partial and first.cursor is not None
    assert (first.searched, first.total) == (10, N)
    pages = await walk(storage, TaskFilter(worker_id="nosuch"))
    assert [p.searched for p in pages] == [10, 20, 30, 40, 50, None]  # the last one searched to the end
    assert not pages[-1].partial and all(p.tasks == [] for p in pages)
    # matches found across partial pages: every one, newest first, none twice
    found = [t.uuid for p in await walk(storage, TaskFilter(worker_id="w-0")) for t in p.tasks]
    assert found == [t.uuid for t in (await storage.list_tasks(["default"], TaskFilter(), N)).tasks]
    assert set(found) == {str(u) for u in uuids}


async def test_indexed_filters_are_not_cut_by_the_budget(seeded: tuple[RedisStorage, list[str]]) -> None:
    storage, uuids = seeded
    storage.scan_budget = 10
    page = await storage.list_tasks(["default"], TaskFilter(task_name="add", status="success"), 50)
    assert not page.partial and page.searched is None
    every = (await storage.list_tasks(["default"], TaskFilter(), N)).tasks
    assert [t.uuid for t in page.tasks] == [t.uuid for t in every][:50]
    assert (await storage.count_tasks(["default"], TaskFilter(task_name="add")))["success"] == N


async def test_a_count_that_runs_out_of_budget_says_how_many_it_searched(
        seeded: tuple[RedisStorage, list[str]]) -> None:
    storage, _ = seeded
    exact = await storage.count_tasks(["default"], TaskFilter(worker_id="w-0"))
    assert exact["success"] == N and SEARCHED not in exact
    storage.scan_budget = 10
    partial = await storage.count_tasks(["default"], TaskFilter(worker_id="w-0"))
    assert partial[SEARCHED] == 10 and partial["success"] == 10
