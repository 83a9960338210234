"""The query side on Redis beyond the shared contract: its indexes leave with the records (result_ttl), the
event feed keeps the last 10,000 events and no more, the index costs bounded memory per record, a filtered
page never SCANs, and fetches that bypass the Lua op still record who runs what since when."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
import redis
from conftest import PrivateRedis

from qtasks_fast.abc.broker import Broker
from qtasks_fast.abc.query import TaskFilter
from qtasks_fast.backends import make_backend
from qtasks_fast.backends.redis.broker import queue_prefix
from qtasks_fast.backends.redis.index import START_GRACE
from qtasks_fast.backends.redis.storage import RedisStorage, record_parts
from qtasks_fast.config import GlobalConfig
from qtasks_fast.exceptions import BrokerUnavailable
from qtasks_fast.testing.contract.harness import envelope, fetch, success


class Backend:
    """A fused Redis broker + storage under ``app_name``, and worker-style consumers of it."""

    def __init__(self, url: str, app_name: str, **config: Any) -> None:
        self.app_name = app_name
        broker, storage = make_backend(url, app_name, GlobalConfig(**config))
        assert isinstance(storage, RedisStorage)
        self.broker, self.storage = broker, storage
        self.prefix = queue_prefix(app_name, "default")
        self.client = redis.Redis.from_url(url)
        self._consumers: list[Broker] = []

    async def consumer(self, name: str = "w-0") -> Broker:
        broker = copy.copy(self.broker)
        await broker.start(name, name, ["default"], self.storage)
        self._consumers.append(broker)
        return broker

    async def run(self, n: int, name: str = "add", chunk: int = 500) -> list[str]:
        """``n`` tasks enqueued, fetched and settled ``success`` as a worker does."""
        b = await self.consumer()
        uuids = []
        for start in range(0, n, chunk):
            envs = [envelope(name) for _ in range(min(chunk, n - start))]
            await self.broker.enqueue(envs, self.storage)
            got = 0
            while got < len(envs):
                ready, _ = await fetch(b, len(envs) - got)
                assert ready, "nothing fetched"
                await b.settle([success(d, 1) for d in ready], self.storage, [])
                got += len(ready)
            uuids += [e.uuid for e in envs]
        return uuids

    def zcard(self, key: str) -> int:
        return int(self.client.zcard(f"{self.prefix}:{key}"))  # type: ignore[arg-type]

    async def close(self) -> None:
        for b in self._consumers:
            await b.close()
        await self.storage.close()
        self.client.close()


@pytest_asyncio.fixture
async def backend(redis_url: str, app_name: str) -> AsyncIterator[Backend]:
    b = Backend(redis_url, app_name, result_ttl=1.0)
    yield b
    await b.close()


@pytest.mark.asyncio
async def test_index_entries_leave_with_their_records(backend: Backend) -> None:
    """Once result_ttl has expired a record, lists and counts no longer show it at once, and the next trim
    (the worker's lease keeper) drops its index entries; a task still queued keeps its entry however old."""
    b = await backend.consumer()
    done, queued = envelope(), envelope()
    await backend.broker.enqueue([done], backend.storage)
    ready, _ = await fetch(b)
    await b.settle([(ready[0], "error", b"\xc0", "Traceback\nValueError: no", "")], backend.storage, [])
    await backend.broker.enqueue([queued], backend.storage)
    assert (backend.zcard("x:n:add"), backend.zcard("x:f:error:add")) == (2, 1)
    await asyncio.sleep(1.3)  # result_ttl=1: the record of `done` expired
    page = await backend.storage.list_tasks(["default"], TaskFilter())
    assert [t.uuid for t in page.tasks] == [queued.uuid]
    assert (backend.zcard("x:n:add"), backend.zcard("x:f:error:add")) == (2, 1)  # a list only reads
    await b.trim_indexes()  # type: ignore[attr-defined]
    assert (backend.zcard("x:n:add"), backend.zcard("x:f:error:add")) == (1, 0)
    assert backend.client.zscore(f"{backend.prefix}:x:n:add", queued.uuid) is not None
    counts = await backend.storage.count_tasks(["default"], TaskFilter())
    assert counts == {"new": 1, "process": 0, "success": 0, "error": 0, "cancel": 0}


@pytest.mark.asyncio
async def test_event_feed_keeps_the_last_ten_thousand_events(backend: Backend) -> None:
    """P:ev holds one entry per batch; the trim keeps the entries that hold the last 10,000 events (never
    fewer) and drops older ones, so a resume from a trimmed id starts at the oldest kept event."""
    for _ in range(12):
        await backend.broker.enqueue([envelope() for _ in range(1000)], backend.storage)
    first = (await backend.storage.events(["default"], None, limit=1)).events[0]
    b = await backend.consumer()
    await b.trim_indexes()  # type: ignore[attr-defined]
    kept = backend.client.xrange(f"{backend.prefix}:ev")
    n = sum(int(fields[b"c"]) for _, fields in kept)  # type: ignore[union-attr]
    assert 10_000 <= n < 12_000
    oldest = (await backend.storage.events(["default"], first.id, limit=1)).events[0]
    assert oldest.id != first.id and oldest.status == "new"


@pytest.mark.asyncio
async def test_event_feed_is_bounded_as_it_is_written(backend: Backend) -> None:
    """A bulk enqueue with no worker running (no trim) keeps P:ev between the last 10,000 and ~20,000 events:
    an entry holds a whole batch, so a bound on entries alone let it grow to ~220 MiB per queue."""
    for _ in range(40):
        await backend.broker.enqueue([envelope() for _ in range(1000)], backend.storage)
    kept = backend.client.xrange(f"{backend.prefix}:ev")
    n = sum(int(fields[b"c"]) for _, fields in kept)  # type: ignore[union-attr]
    assert 10_000 <= n <= 21_000, n
    events, cursor = [], None  # a page holds 1..1000 events, as on every backend (querylib.check_limit)
    while page := (await backend.storage.events(["default"], cursor, limit=1000)).events:
        events += page
        cursor = page[-1].id
    assert len(events) == n and all(e.status == "new" for e in events)  # every kept event reads back


@pytest.mark.asyncio
async def test_index_memory_per_record_is_bounded(backend: Backend) -> None:
    """What the query side's zsets add per finished record: one entry in its name's zset for a success (which
    has no zset of its own), and the counts still tell successes from the rest."""
    n = 2000
    await backend.run(n)
    keys = [f"{backend.prefix}:x:n:add", f"{backend.prefix}:x:f:success:add"]
    used = sum(int(backend.client.memory_usage(k, samples=0) or 0) for k in keys)
    assert (backend.zcard("x:n:add"), backend.zcard("x:f:success:add")) == (n, 0)
    assert used / n < 200, f"{used / n:.0f} bytes of index per record"
    counts = await backend.storage.count_tasks(["default"], TaskFilter(task_name="add"))
    assert counts == {"new": 0, "process": 0, "success": n, "error": 0, "cancel": 0}


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: Any = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


@pytest.mark.asyncio
async def test_a_filtered_page_never_scans(private_redis: PrivateRedis, tmp_path: Path) -> None:
    """Pages, page 2 and counts are answered from the indexes: command stats show no SCAN or KEYS, and one
    script call per page (a SCAN made afterwards does show, so the check can fail)."""
    backend = Backend(private_redis.url, "noscan")
    try:
        await backend.run(1500, name="add")
        await backend.run(500, name="boom")
        q = backend.storage
        now = time.time()
        f = TaskFilter(task_name="add", status="success", created_after=now - 3600, created_before=now + 1)
        await backend.broker.enqueue([envelope() for _ in range(3)], backend.storage)  # a backlog to count
        for b in backend._consumers:  # its worker gone: no late 'started' call of a plain read lands in the count
            await b.close()
        backend._consumers.clear()
        backend.client.config_resetstat()
        page = await q.list_tasks(["default"], f, 50)
        assert len(page.tasks) == 50 and page.cursor is not None
        page2 = await q.list_tasks(["default"], f, 50, page.cursor)
        assert len(page2.tasks) == 50 and not {t.uuid for t in page.tasks} & {t.uuid for t in page2.tasks}
        counts = await q.count_tasks(["default"], TaskFilter(task_name="add"))
        assert (counts["success"], counts["new"]) == (1500, 3)
        calls = command_calls(backend.client)
        assert "scan" not in calls and "keys" not in calls, calls
        # redis.lua runs as FCALL of its library (issue 16): one per page and one count, plus at most one more
        # per page when a loaded machine cuts a call at its 1 ms cap (the walk then goes on where it stopped)
        assert 3 <= calls.get("fcall", 0) <= 5, calls
        await q.delete_finished(["default"])
        assert "scan" in command_calls(backend.client)
    finally:
        await backend.close()


async def hot_batches(b: Broker) -> tuple[list[Any], list[Any]]:
    """Two fetches of 4: the Lua op's, which fills the batch from one stream, then a plain XREADGROUP of it."""
    first, _ = await fetch(b, 4)
    assert b._hot is not None  # type: ignore[attr-defined]
    second, _ = await fetch(b, 4)
    assert len(first) == len(second) == 4
    return first, second


@pytest.mark.asyncio
async def test_fetches_that_bypass_the_lua_op_record_process_and_start(backend: Backend) -> None:
    """A busy stream is read with a plain XREADGROUP (no Lua): when no settle follows (long tasks), those
    tasks still get their ``process`` event, their worker and their start time within a second."""
    await backend.broker.enqueue([envelope() for _ in range(12)], backend.storage)
    b = await backend.consumer("w-3")
    t0 = time.time()
    first, second = await hot_batches(b)
    await asyncio.sleep(START_GRACE + 0.3)
    events = (await backend.storage.events(["default"], None)).events
    running = {e.uuid for e in events if e.status == "process" and e.worker_id == "w-3"}
    assert running == {d.envelope.uuid for d in first + second}
    page = await backend.storage.list_tasks(["default"], TaskFilter(status="process"))
    assert {t.uuid for t in page.tasks} == running
    assert all(t.worker_id == "w-3" and t.started_at is not None and t.started_at >= t0 - 1 for t in page.tasks)


@pytest.mark.asyncio
async def test_a_renewal_keeps_the_start_of_a_plain_read_task(backend: Backend) -> None:
    """A task a plain XREADGROUP handed out started when it was delivered (Redis' pending list dates it); the
    lease keeper's renewal resets that date, and a live view still shows the hand-out time, not the renewal's."""
    await backend.broker.enqueue([envelope() for _ in range(12)], backend.storage)
    b = await backend.consumer("w-3")
    first, second = await hot_batches(b)
    fetched = time.time()
    await asyncio.sleep(START_GRACE * 0.75)  # renewed before a 'started' call or a settle could date them
    assert len(list(await b.renew([*first, second[0]]) or ())) == 5
    renewed = time.time()
    for _ in range(2):  # right after the renewal, and once the 'started' call has gone out too
        page = await backend.storage.list_tasks(["default"], TaskFilter(status="process"))
        started = {t.uuid: t.started_at for t in page.tasks}
        assert set(started) == {d.envelope.uuid for d in first + second}
        for d in first + second:
            at = started[d.envelope.uuid]
            assert at is not None and fetched - 1 <= at <= fetched + 0.05 < renewed - 0.2, (d.envelope.uuid, at)
        await asyncio.sleep(START_GRACE)


@pytest.mark.asyncio
async def test_a_settle_carries_the_starts_of_plain_reads(private_redis: PrivateRedis) -> None:
    """Under load the worker settles all the time: the ``process`` events and start times of plain-read tasks
    ride in the next settle of their queue, so they cost no command of their own, and each task's
    ``process`` still comes before its end."""
    backend = Backend(private_redis.url, "carry")
    try:
        await backend.broker.enqueue([envelope() for _ in range(12)], backend.storage)
        b = await backend.consumer("w-3")
        backend.client.config_resetstat()
        first, second = await hot_batches(b)
        await b.settle([success(d, 1) for d in [*first, second[0]]], backend.storage, [])
        await asyncio.sleep(START_GRACE + 0.3)  # no 'started' call comes later either
        assert command_calls(backend.client).get("fcall", 0) == 2  # the Lua fetch, the settle
        events = (await backend.storage.events(["default"], None)).events
        order = [(e.uuid, e.status) for e in events if e.status in ("process", "success")]
        for d in first + second:
            assert (d.envelope.uuid, "process") in order
        done = second[0].envelope.uuid
        assert order.index((done, "process")) < order.index((done, "success"))
        page = await backend.storage.list_tasks(["default"], TaskFilter(status="process"))
        assert {t.uuid for t in page.tasks} == {d.envelope.uuid for d in second[1:]}
        assert all(t.started_at is not None for t in page.tasks)
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_a_failed_settle_keeps_the_starts_it_carried(private_redis: PrivateRedis) -> None:
    """A settle that fails in an outage is sent again by the worker: the ``process`` events it carried go with
    the retry instead of being lost."""
    backend = Backend(private_redis.url, "outage")
    try:
        await backend.broker.enqueue([envelope() for _ in range(12)], backend.storage)
        b = await backend.consumer("w-3")
        first, second = await hot_batches(b)
        outcomes = [success(d, 1) for d in [*first, second[0]]]
        private_redis.stop()
        with pytest.raises(BrokerUnavailable):
            await b.settle(outcomes, backend.storage, [])
        private_redis.start()
        for attempt in range(5):  # the worker's outage loop: stale connections fail once
            try:
                await b.settle(outcomes, backend.storage, [])
                break
            except BrokerUnavailable:
                await asyncio.sleep(0.05 * (attempt + 1))
        events = (await backend.storage.events(["default"], None)).events
        running = {e.uuid for e in events if e.status == "process"}
        assert running == {d.envelope.uuid for d in first + second}
    finally:
        await backend.close()


def test_records_of_every_layout_read() -> None:
    """Records written before the start time (8 elements) and before the delivery count (7) still read."""
    env = msgspec.msgpack.encode(envelope())
    eight = msgspec.msgpack.encode((env, "success", "1000", b"", "w-0", "", "", 3))
    seven = msgspec.msgpack.encode((env, "cancel", "1000", b"", "", "why", ""))
    nine = msgspec.msgpack.encode((env, "success", "1000", b"", "w-0", "", "", 2, 900))
    assert record_parts(eight)[7:] == (3, 0)
    assert record_parts(seven)[7:] == (1, 0)
    assert record_parts(nine)[7:] == (2, 900)


@pytest.mark.asyncio
async def test_a_page_of_the_event_feed_is_one_or_two_round_trips(private_redis: PrivateRedis) -> None:
    """A page of 1,000 events (the web server's one reader takes them so while the fleet drains) is read in as
    few XRANGE calls as the entries it needs (was one per 100 entries: five for 1,000 events of two-event
    batches, each a round trip and a reply parsed), and every event reads back once, in order."""
    backend = Backend(private_redis.url, "evpages")
    try:
        made = []
        for _ in range(600):  # an entry of P:ev per batch: 600 entries of two events
            batch = [envelope(), envelope()]
            made += [e.uuid for e in batch]
            await backend.broker.enqueue(batch, backend.storage)
        backend.client.config_resetstat()
        events, cursor, pages = [], None, 0
        while page := (await backend.storage.events(["default"], cursor, limit=1000)).events:
            events += page
            cursor, pages = page[-1].id, pages + 1
        assert [e.uuid for e in events] == made and pages == 2
        assert command_calls(backend.client).get("xrange", 0) <= 4  # was 8
    finally:
        await backend.close()
