"""The query side on inputs a dashboard or a REST client will send sooner or later (issue 12): an empty search
box, a time bound that is not a time, a cursor or event id edited by hand. Memory and SQLite answer alike, and
what they refuse is a one-line ``ValueError`` saying what to pass, never an ``OverflowError`` from the driver."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from qtasks_fast.abc.broker import Broker
from qtasks_fast.abc.query import TaskFilter, TaskQueries
from qtasks_fast.backends import make_backend
from qtasks_fast.config import GlobalConfig
from qtasks_fast.testing.contract.harness import envelope, failure, fetch, success

pytestmark = pytest.mark.asyncio
HUGE = "99999999999999999999999"  # past 2**63: what no 64-bit column holds


@pytest.fixture(params=["memory://", "sqlite:///{tmp_path}/odd.sqlite3", "redis"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Broker, TaskQueries]]:
    """Three tasks: one succeeded (no traceback), one failed, one still new."""
    url = request.param.replace("{tmp_path}", str(tmp_path))
    if url == "redis":
        url = str(request.getfixturevalue("redis_url"))
    broker, storage = make_backend(url, f"odd{time.time_ns()}", GlobalConfig())
    assert isinstance(storage, TaskQueries)
    worker = copy.copy(broker)
    await worker.start("w-0", "w-0", ["default"], storage)
    await broker.enqueue([envelope(), envelope("boom")], storage)
    ready, _ = await fetch(worker)
    ok, bad = sorted(ready, key=lambda d: d.envelope.task_name != "add")  # type: ignore[union-attr]
    await worker.settle([success(ok, 3), failure(bad, "Traceback ...\nValueError: Ärger")], storage, [])
    await broker.enqueue([envelope()], storage)
    yield broker, storage
    await worker.close()
    await broker.close()


async def test_an_empty_error_search_is_no_filter(backend: tuple[Broker, TaskQueries]) -> None:
    """``error_contains=""`` (an empty search box) lists what no filter lists, records without a traceback
    included, on every backend (SQLite listed only failed tasks, memory every task)."""
    _, q = backend
    everything = [t.uuid for t in (await q.list_tasks(["default"], TaskFilter())).tasks]
    assert len(everything) == 3
    assert [t.uuid for t in (await q.list_tasks(["default"], TaskFilter(error_contains=""))).tasks] == everything
    assert await q.count_tasks(["default"], TaskFilter(error_contains="")) == await q.count_tasks(
        ["default"], TaskFilter())
    assert len((await q.list_tasks(["default"], TaskFilter(error_contains="ärger"))).tasks) == 1


@pytest.mark.parametrize("bound", ["created_after", "created_before", "finished_after", "finished_before"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
async def test_a_time_bound_that_is_not_a_time_is_refused_naming_it(bound: str, value: float) -> None:
    """NaN matched nothing on memory and raised a driver error on SQLite; infinity matched all on memory and
    overflowed on SQLite. Now the filter itself refuses both, for every backend, however it is built."""
    with pytest.raises(ValueError, match=f"TaskFilter.{bound} must be a time in seconds since the epoch"):
        TaskFilter(**{bound: value})
    with pytest.raises(ValueError, match=f"TaskFilter.{bound} must be a time"):
        msgspec.convert({bound: value}, TaskFilter)  # as a REST layer builds it from parsed parameters
    assert TaskFilter(**{bound: 0.0}) == TaskFilter(**{bound: 0.0})  # a finite bound, even the epoch, is fine


@pytest.mark.parametrize("cursor", [f"{HUGE}:x", f"-{HUGE}:x", "１２３:x"])
async def test_a_cursor_past_what_a_backend_holds_is_invalid(backend: tuple[Broker, TaskQueries],
                                                             cursor: str) -> None:
    _, q = backend
    with pytest.raises(ValueError, match="invalid task list cursor .*: pass back the cursor of the previous page"):
        await q.list_tasks(["default"], TaskFilter(), cursor=cursor)
    page = await q.list_tasks(["default"], TaskFilter(), limit=1)
    assert page.cursor is not None  # a real cursor still pages on
    assert len((await q.list_tasks(["default"], TaskFilter(), cursor=page.cursor)).tasks) == 2


@pytest.mark.parametrize("after", [HUGE, f"1.{HUGE}", "²", "１"])
async def test_an_event_id_past_what_a_backend_holds_is_invalid(backend: tuple[Broker, TaskQueries],
                                                                after: str) -> None:
    """Memory's ids are integers, SQLite's ``row.index``: neither takes a number past 64 bits nor a digit
    that is not ASCII (``"²".isdigit()`` is true, ``int("²")`` fails)."""
    _, q = backend
    if after.startswith("1.") and q.__class__.__module__.startswith("qtasks_fast.backends.memory"):
        after = HUGE + "0"  # memory ids have no index part: the same case is a longer number
    with pytest.raises(ValueError, match="invalid event id .*: pass an event's id, a page's cursor, None or '\\$'"):
        await q.events(["default"], after)
    first = (await q.events(["default"], None, limit=1)).events[0]
    assert (await q.events(["default"], first.id)).events  # a real id still resumes


async def test_a_huge_error_message_is_cut_in_the_list_and_whole_in_the_detail(
        backend: tuple[Broker, TaskQueries]) -> None:
    """A task that raised a 200 kB (unicode) message: its list row carries 500 characters ending in an ellipsis,
    the search still finds text past the cut, and the detail has the whole traceback."""
    broker, q = backend
    message = "ValueError: " + "ж" * 200_000 + " needle"
    worker = copy.copy(broker)
    await worker.start("w-1", "w-1", ["default"], q)  # type: ignore[arg-type]
    await broker.enqueue([envelope("boom")], q)  # type: ignore[arg-type]
    ready, _ = await fetch(worker)
    await worker.settle([failure(ready[0], "Traceback ...\n" + message)], q, [])  # type: ignore[arg-type]
    (row,) = (await q.list_tasks(["default"], TaskFilter(error_contains="NEEDLE"))).tasks
    assert row.error is not None and len(row.error) == 500
    assert row.error.startswith("ValueError: жжж") and row.error.endswith("ж…")
    detail = await q.task_detail(row.uuid, ["default"])
    assert detail is not None and (detail.task.traceback or "").endswith(message)
    await worker.close()


@pytest.mark.parametrize("minutes", [0, -1, 7 * 24 * 60 + 1, 10**7])
async def test_a_throughput_window_out_of_range_is_refused(backend: tuple[Broker, TaskQueries], minutes: int) -> None:
    """Like a page's limit: a window of 10**7 minutes built 10**7 points (seconds of CPU, hundreds of MB) for a
    chart; now it is a one-line error. A week still answers, one point per minute."""
    _, q = backend
    with pytest.raises(ValueError, match=r"minutes must be between 1 and 10080 \(a week\), got "):
        await q.throughput(["default"], minutes)
    week = await q.throughput(["default"], 7 * 24 * 60)
    assert len(week) == 10080 and sum(p.success + p.error for p in week) == 2


async def test_error_search_ignores_case_beyond_ascii_past_rows_that_almost_match(
        backend: tuple[Broker, TaskQueries]) -> None:
    """Python's case rules on every backend: "ÄRGER" found by "ärger" behind newer "Berger" rows a server-side
    search on its ASCII part also returns (a page must still fill), the Kelvin sign found by "kelvin", a
    Cyrillic-only search, and counts that agree with the pages."""
    broker, q = backend
    worker = copy.copy(broker)
    await worker.start("w-2", "w-2", ["default"], q)  # type: ignore[arg-type]
    # newest last, each a second apart (and newer than the fixture's "Ärger"): the order the pages show
    texts = ["ValueError: ÄRGER", "ValueError: \u212aELVIN", "ValueError: Ошибка", *["ValueError: Berger"] * 3]
    envs = [msgspec.structs.replace(envelope("boom"), created_at=time.time() + 1 + i) for i in range(len(texts))]
    await broker.enqueue(envs, q)  # type: ignore[arg-type]
    ready, _ = await fetch(worker)
    tb = {e.uuid: "Traceback ...\n" + t for e, t in zip(envs, texts, strict=True)}
    mine = [d for d in ready if d.envelope.uuid in tb]  # type: ignore[union-attr]  (not the fixture's new task)
    await worker.settle([failure(d, tb[d.envelope.uuid]) for d in mine], q, [])  # type: ignore[arg-type,union-attr]

    async def found(needle: str, limit: int = 1) -> list[str | None]:
        rows, cursor = [], None
        while True:  # page by page: each page must hold `limit` rows while more match
            page = await q.list_tasks(["default"], TaskFilter(error_contains=needle), limit=limit, cursor=cursor)
            assert len(page.tasks) == limit or page.cursor is None
            rows += [t.error for t in page.tasks]
            if page.cursor is None:
                return rows
            cursor = page.cursor

    assert await found("ärger") == ["ValueError: ÄRGER", "ValueError: Ärger"]
    assert await found("KELVIN") == ["ValueError: \u212aELVIN"]
    assert await found("ОШИБКА", limit=5) == ["ValueError: Ошибка"]
    assert await found("berger", limit=2) == ["ValueError: Berger"] * 3
    counts = await q.count_tasks(["default"], TaskFilter(error_contains="ärger"))
    assert counts == {"new": 0, "process": 0, "success": 0, "error": 2, "cancel": 0}
    await worker.close()
