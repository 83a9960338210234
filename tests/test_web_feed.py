"""The shared event feed behind SSE (qtasks_fast.service.feed): every follower gets the backend's events in
order without a gap or a repeat, whether it joins live, resumes from an id older than the feed, or falls behind
the feed's memory; and followers share one reader of the backend."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from apps.web_app import build

from qtasks_fast import QueueTasks, service
from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.service import feed as feed_module
from qtasks_fast.service.feed import Feeds
from qtasks_fast.testing import WorkerThread

ME = service.Caller(who="test")


async def take(app: QueueTasks, feeds: Feeds, after: str | None, n: int) -> list[TaskEvent]:
    got: list[TaskEvent] = []
    async with contextlib.aclosing(feeds(None).follow(after)) as events:
        async for batch in events:
            assert isinstance(batch, list)
            got += batch
            if len(got) >= n:
                assert len(got) == n, got  # nothing beyond what was made
                return got
    raise AssertionError("the feed ended")


async def everything(app: QueueTasks) -> list[TaskEvent]:
    return (await service.events(app, None, 1000)).events


@pytest.fixture
def app(url: str, app_name: str) -> QueueTasks:
    return build(app_name, url)


async def test_live_followers_share_one_reader_and_see_the_same_events(app: QueueTasks,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    reads = 0
    real = feed_module.events

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_module, "events", counting)
    feeds = Feeds(app)
    followers = [asyncio.create_task(take(app, feeds, "$", 4)) for _ in range(20)]
    await asyncio.sleep(0.3)
    before = reads
    for i in range(4):
        await service.submit(app, ME, "add", [i, i])
    got = await asyncio.wait_for(asyncio.gather(*followers), 10)
    assert all(g == got[0] for g in got) and [e.status for e in got[0]] == ["new"] * 4
    assert got[0] == (await everything(app))[-4:]
    assert reads - before < 20  # one reader for twenty followers, not one each


async def test_a_follower_resuming_from_an_old_id_gets_exactly_what_it_missed(app: QueueTasks) -> None:
    for i in range(3):
        await service.submit(app, ME, "add", [i, i])
    old = (await everything(app))[0]
    feeds = Feeds(app)
    live = asyncio.create_task(take(app, feeds, "$", 2))  # the feed starts after the first three
    await asyncio.sleep(0.3)
    resuming = asyncio.create_task(take(app, feeds, old.id, 4))
    await asyncio.sleep(0.3)
    for i in range(2):
        await service.submit(app, ME, "add", [i, 9])
    all_events = await everything(app)
    assert await asyncio.wait_for(resuming, 10) == all_events[1:5]
    assert await asyncio.wait_for(live, 10) == all_events[3:5]


async def test_a_follower_behind_the_feeds_memory_reads_the_backend(app: QueueTasks,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "KEPT", 2)
    feeds = Feeds(app)
    live = asyncio.create_task(take(app, feeds, "$", 5))
    await asyncio.sleep(0.3)
    first = await service.submit(app, ME, "add", [0, 0])
    for i in range(4):
        await service.submit(app, ME, "add", [i, 1])
    all_events = await everything(app)
    assert await asyncio.wait_for(live, 10) == all_events
    assert all_events[0].uuid == str(first.uuid)
    behind = await asyncio.wait_for(take(app, feeds, all_events[0].id, 4), 10)  # the ring holds the last two
    assert behind == all_events[1:]


async def test_a_summary_follower_counts_every_event_and_resumes_from_the_last(app: QueueTasks) -> None:
    from qtasks_fast.service.feed import Summary

    start = (await service.events(app, "$", 1)).cursor  # the feed's end now
    feeds = Feeds(app)
    counted: dict[str, int] = {}
    last = ""

    async def follow() -> None:
        nonlocal last
        async with contextlib.aclosing(feeds(None).follow("$", summary=True)) as batches:
            async for s in batches:
                if isinstance(s, Summary):
                    for k, v in s.counts.items():
                        counted[k] = counted.get(k, 0) + v
                    last = s.last
                    if counted.get("success", 0) >= 3:
                        return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    with WorkerThread(app):
        for i in range(3):
            await service.submit(app, ME, "add", [i, 1], wait=10)
    await asyncio.wait_for(task, 10)
    missed = (await service.events(app, start, 1000)).events
    expected = Summary.of(missed)
    assert counted == expected.counts and counted["new"] == 3
    assert last == expected.last


async def test_encoded_followers_share_one_encoding_per_read_and_get_every_frame_in_order(app: QueueTasks) -> None:
    from qtasks_fast.web.sse import encode_events

    encoded: list[int] = []

    def encode(events: list[TaskEvent]) -> bytes:
        encoded.append(len(events))
        return encode_events(events)

    feeds = Feeds(app, encode=encode)

    async def frames(n: int) -> bytes:
        got = b""
        async with contextlib.aclosing(feeds(None).follow("$", encoded=True)) as stream:
            async for batch in stream:
                assert isinstance(batch, bytes)
                got += batch
                if got.count(b"event: task") >= n:
                    return got
        raise AssertionError("the feed ended")

    followers = [asyncio.create_task(frames(6)) for _ in range(30)]
    await asyncio.sleep(0.3)
    for i in range(6):
        await service.submit(app, ME, "add", [i, i])
    got = await asyncio.wait_for(asyncio.gather(*followers), 10)
    want = encode_events((await everything(app))[-6:])
    assert all(g == want for g in got)  # every frame, in order, once
    assert sum(encoded) == 6  # each event encoded once for thirty followers (was once per follower)


async def test_a_busy_feed_reads_the_backend_a_few_times_a_second_not_once_per_change(
        app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = 0
    real = feed_module.events

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_module, "events", counting)
    feeds = Feeds(app)
    follower = asyncio.create_task(take(app, feeds, "$", 100))
    await asyncio.sleep(0.3)
    before, start = reads, asyncio.get_running_loop().time()
    for i in range(100):  # a change every few ms (more on a slower backend)
        await service.submit(app, ME, "add", [i, i])
        await asyncio.sleep(0.005)
    got = await asyncio.wait_for(follower, 10)
    took = asyncio.get_running_loop().time() - start
    assert [e.status for e in got] == ["new"] * 100  # every change, in order
    assert reads - before <= took / feed_module.READ_GAP + 3, (reads - before, took)  # was one read per change
