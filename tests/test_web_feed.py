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


async def test_live_followers_share_one_reader_and_see_the_same_events(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    real = feed_module.raw_events  # the reader of every event reads the backend's JSON (no event objects)

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_module, "raw_events", counting)
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


async def test_a_follower_behind_the_feeds_memory_reads_the_backend(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
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


class Reads:
    """Counts the feed's reads of the backend's event stream and the events they returned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads = self.events = 0
        self.limits: set[int] = set()
        real = feed_module.events

        async def counting(*args: object, **kwargs: object) -> object:
            page = await real(*args, **kwargs)  # type: ignore[arg-type]
            self.reads += 1
            self.events += len(page.events)
            self.limits.add(int(args[2]))  # type: ignore[call-overload]
            return page

        monkeypatch.setattr(feed_module, "events", counting)


async def test_summary_followers_alone_read_no_event_yet_see_each_change_within_a_second(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtasks_fast.service.feed import Summary

    reads = Reads(monkeypatch)
    feeds = Feeds(app)
    got: list[list[tuple[float, Summary]]] = [[] for _ in range(20)]

    async def follow(i: int) -> None:
        async with contextlib.aclosing(feeds(None).follow("$", summary=True)) as batches:
            async for s in batches:
                if isinstance(s, Summary):
                    got[i].append((asyncio.get_running_loop().time(), s))

    followers = [asyncio.create_task(follow(i)) for i in range(20)]
    try:
        await asyncio.sleep(0.5)
        assert all(len(g) == 1 for g in got), got  # the current counts at once, to each
        loop = asyncio.get_running_loop()
        with WorkerThread(app):
            start = loop.time()
            for i in range(200):
                await service.submit(app, ME, "add", [i, 1], wait=10 if i == 199 else None)
            await asyncio.sleep(1.2)
        took = loop.time() - start
        made = (await service.events(app, None, 1000)).events
        assert len(made) >= 400  # 200 tasks' new, (process,) success events were made ...
        assert reads.limits == {1} and reads.events <= reads.reads  # ... and the feed read none but its probes
        assert reads.reads <= 2 * took * feed_module.COUNTS_RATE + 6, (reads.reads, took)
        last = got[0][-1][1]
        tp = (await service.throughput(app, 1))[-1]
        assert last.minute == tp.minute and last.counts == {
            "success": tp.success,
            "error": tp.error,
            "cancel": tp.cancel,
        }
        # the state seen is the fleet's: nothing came after the id of the last frame
        assert (await service.events(app, last.last, 10)).events == []
        assert all([s for _, s in g] == [s for _, s in got[0]] for g in got)  # one reader's frames for all
        # a change (a task queued, nothing finished) reaches the followers within a second
        before = len(got[0])
        t0 = loop.time()
        await service.submit(app, ME, "add", [1, 1])
        while len(got[0]) == before and loop.time() - t0 < 2:
            await asyncio.sleep(0.02)
        assert len(got[0]) > before and got[0][-1][0] - t0 < 1.0
        assert got[0][-1][1].last != last.last
    finally:
        for f in followers:
            f.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def test_a_follower_of_every_event_joining_summary_followers_gets_every_event(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    from qtasks_fast.service.feed import Summary

    feeds = Feeds(app)
    summaries: list[Summary] = []

    async def follow() -> None:
        async with contextlib.aclosing(feeds(None).follow("$", summary=True)) as batches:
            async for s in batches:
                if isinstance(s, Summary):
                    summaries.append(s)

    counts = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.4)
        assert feeds(None).mode == "counts"
        cursor = (await service.events(app, "$", 1)).cursor
        await service.submit(app, ME, "add", [0, 0])  # before the follower of every event comes
        every = asyncio.create_task(take(app, feeds, cursor, 4))
        await asyncio.sleep(0.3)
        assert feeds(None).mode == "events"
        for i in range(3):
            await service.submit(app, ME, "add", [i, 1])
        got = await asyncio.wait_for(every, 10)
        assert got == (await everything(app))[-4:]  # no gap, no repeat across the reader's change
        seen = len(summaries)
        await service.submit(app, ME, "add", [9, 9])
        await asyncio.sleep(1.0)
        assert len(summaries) > seen  # the counts followers still hear of changes
        assert feeds(None).mode == "counts"  # and the reader went back to counts alone
    finally:
        counts.cancel()
        await asyncio.gather(counts, return_exceptions=True)


async def test_encoded_followers_share_one_encoding_per_read_and_get_every_frame_in_order(app: QueueTasks) -> None:
    from qtasks_fast.web.sse import encode_events, encode_raw

    encoded: list[int] = []

    def encode(ids: list[str], data: list[bytes]) -> bytes:
        encoded.append(len(ids))
        return encode_raw(ids, data)

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
    assert all(g == want for g in got)  # every frame, in order, once, as the events' own frames byte for byte
    assert sum(encoded) == 6  # each event encoded once for thirty followers (was once per follower)


async def test_a_busy_feed_reads_the_backend_a_few_times_a_second_not_once_per_change(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = 0
    real = feed_module.raw_events  # the reader of every event reads the backend's JSON (no event objects)

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_module, "raw_events", counting)
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
