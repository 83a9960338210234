"""``GET /api/v1/events?watch=true`` (issue 13): what the Tasks and task pages follow. A "changed" frame, at most
one per 0.8 s when what the stream's filter shows changed, its id a resume point after that change; nothing for an
event it does not show;
resume with ``Last-Event-ID``; the filter checked before the stream starts; an id-only keep-alive however busy
the fleet; a broker error neither freezes the server nor outlives the broker's return. On memory, SQLite, Redis
and PostgreSQL (the test run's own schema).

The streams are driven as ASGI calls in the test's own loop (httpx's ASGI transport waits for a response's end,
and a watch stream has none)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from apps.web_app import build
from apps.webkit import TOKEN, client

from qtasks_fast import QueueTasks, service
from qtasks_fast.abc.query import TaskEvent, TaskFilter
from qtasks_fast.service import feed as feed_module
from qtasks_fast.service import polls as polls_module
from qtasks_fast.service.watch import Watch
from qtasks_fast.web import create_app
from qtasks_fast.web.sse import NAME

ME = service.Caller(who="test")


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def broker(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param in ("redis", "postgres"):
        return str(request.getfixturevalue(f"{'redis' if request.param == 'redis' else 'pg'}_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'q.db'}"


@pytest.fixture
def app(broker: str, app_name: str) -> QueueTasks:
    return build(app_name, broker)


class Stream:
    """One ``/api/v1/events`` request to the ASGI app, read as it comes: ``frames`` holds (time, event, id)."""

    def __init__(self, web: Any, params: dict[str, str], last: str | None = None) -> None:
        headers = [(b"authorization", f"Bearer {TOKEN}".encode())]
        if last:
            headers.append((b"last-event-id", last.encode()))
        self.scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                      "scheme": "http", "path": "/api/v1/events", "raw_path": b"/api/v1/events",
                      "query_string": urlencode(params).encode(), "root_path": "", "headers": headers,
                      "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
        self.web, self.status, self.buffer = web, 0, b""
        self.frames: list[tuple[float, str, str]] = []
        self.gone = asyncio.Event()
        self.started = asyncio.Event()
        self.requested = False

    async def receive(self) -> dict[str, Any]:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
            return
        self.buffer += message.get("body", b"")
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line
                          and not line.startswith(":"))
            if "event" in fields or "id" in fields:  # an id alone: a keep-alive of a watch stream (kind "")
                self.frames.append((asyncio.get_running_loop().time(), fields.get("event", ""), fields.get("id", "")))

    async def __aenter__(self) -> Stream:
        self.task = asyncio.create_task(self.web(self.scope, self.receive, self.send))
        await asyncio.wait_for(self.started.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.gone.set()
        try:
            await asyncio.wait_for(self.task, 5)
        except asyncio.TimeoutError:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def changed(self) -> list[tuple[float, str, str]]:
        return [f for f in self.frames if f[1] == "changed"]

    async def until(self, n: int, kind: str = "changed", timeout: float = 3.0) -> tuple[float, str, str]:
        """The ``n``-th frame of ``kind`` (1-based), waiting for it at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            got = [f for f in self.frames if f[1] == kind]
            if len(got) >= n:
                return got[n - 1]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no frame {kind} #{n} within {timeout} s: {self.frames}")


async def events_of(app: QueueTasks) -> list[TaskEvent]:
    return (await service.events(app, None, 1000)).events


async def resumes_after(app: QueueTasks, event_id: str, matching: Any) -> None:
    """``event_id`` is a resume point of the backend's feed after every event ``matching`` (a page that fetched
    itself on that frame saw them; a reconnect from there hears of what follows)."""
    later = (await service.events(app, event_id, 1000)).events
    assert not [e for e in later if matching(e)], (event_id, later)
    assert [e for e in await events_of(app) if matching(e)]  # there was one to see


async def test_a_matching_change_is_signalled_within_a_second_and_another_is_not(app: QueueTasks) -> None:
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as s:
        assert s.status == 200
        await s.until(1, "watching")
        await service.submit(app, ME, "sleeper", [0])  # another task name
        await asyncio.sleep(1.2)
        assert s.changed() == []  # nothing the page shows changed
        loop = asyncio.get_running_loop()
        start = loop.time()
        made = await service.submit(app, ME, "add", [1, 2])
        at, _, event_id = await s.until(1)
        assert at - start < 1.0
        await resumes_after(app, event_id, lambda e: e.uuid == str(made.uuid))  # where a reconnect resumes


async def test_a_queue_is_a_field_of_the_filter_on_the_one_reader_of_every_queue(app: QueueTasks) -> None:
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "queue": "other"}) as s:
        await s.until(1, "watching")
        await service.submit(app, ME, "add", [1, 1])  # the default queue
        await asyncio.sleep(1.2)
        assert s.changed() == []
        await service.submit(app, ME, "elsewhere")
        await s.until(1)
        assert list(web.state.feeds._feeds) == [None]  # no reader of its own


async def test_a_burst_is_a_few_frames_and_the_last_change_is_always_signalled(app: QueueTasks) -> None:
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add", "status": "new"}) as s:
        await s.until(1, "watching")
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(150):
            await service.submit(app, ME, "add", [i, i])
            if i % 10 == 0:
                await service.submit(app, ME, "sleeper", [0])
            await asyncio.sleep(0.01)
        took = loop.time() - start
        await asyncio.sleep(1.0)
        got = s.changed()
        assert got  # the last one after every matching event, after the gap
        await resumes_after(app, got[-1][2], lambda e: e.task_name == "add")
        # not one per event: one at the start of the burst, then one per gap until the last (its end + a gap)
        assert len(got) <= (took + feed_module.WATCH_GAP) / feed_module.WATCH_GAP + 1, (len(got), took)
        gaps = [b[0] - a[0] for a, b in zip(got, got[1:])]
        assert all(g >= feed_module.WATCH_GAP - 0.05 for g in gaps), gaps


async def test_a_task_page_hears_only_of_its_task(app: QueueTasks) -> None:
    mine = await service.submit(app, ME, "add", [1, 1])
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "uuid": str(mine.uuid)}) as s:
        await s.until(1, "watching")
        for i in range(5):
            await service.submit(app, ME, "add", [i, 0])
        await asyncio.sleep(1.2)
        assert s.changed() == []
        await service.cancel(app, ME, str(mine.uuid))
        _, _, event_id = await s.until(1)
        await resumes_after(app, event_id, lambda e: e.uuid == str(mine.uuid) and e.status == "cancel")


async def test_a_table_filtered_on_a_status_hears_its_rows_come_and_go_not_the_rest_of_the_fleet(
    app: QueueTasks,
) -> None:
    """What a status-filtered table shows: tasks entering that status, and its rows leaving it; a fleet busy with
    other statuses is no change (the poll reads the page of that status the table shows, not every status's)."""
    first = await service.submit(app, ME, "add", [0, 0])
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "status": "cancel"}) as s:
        await s.until(1, "watching")
        for i in range(5):  # new tasks: not what the table shows
            await service.submit(app, ME, "add", [i, 1])
        await asyncio.sleep(1.2)
        assert s.changed() == []
        await service.cancel(app, ME, str(first.uuid))  # a task enters it
        _, _, event_id = await s.until(1)
        await resumes_after(app, event_id, lambda e: e.uuid == str(first.uuid))


@pytest.mark.parametrize("held", [True, False], ids=["feed-running", "feed-restarted"])
async def test_a_reconnect_with_last_event_id_is_told_what_changed_while_away(app: QueueTasks, held: bool) -> None:
    web = create_app(app, token=TOKEN)
    async with contextlib.AsyncExitStack() as keep:
        if held:  # another tab keeps the server's reader going: the resume point is in the feed's memory
            other = await keep.enter_async_context(Stream(web, {"watch": "true", "task_name": "fail"}))
            await other.until(1, "watching")
        async with Stream(web, {"watch": "true", "task_name": "add"}) as s:
            await s.until(1, "watching")
            await service.submit(app, ME, "add", [0, 0])
            _, _, last = await s.until(1)
        await service.submit(app, ME, "sleeper", [0])  # while away: only what the page does not show ...
        async with Stream(web, {"watch": "true", "task_name": "add"}, last=last) as s:
            assert (await s.until(1, "watching"))[2] == last
            await asyncio.sleep(1.2)
            assert s.changed() == []  # ... is no change
        made = await service.submit(app, ME, "add", [1, 1])  # and then what it shows
        async with Stream(web, {"watch": "true", "task_name": "add"}, last=last) as s:
            start = asyncio.get_running_loop().time()
            at, _, event_id = await s.until(1)
            assert at - start < 1.0
            await resumes_after(app, event_id, lambda e: e.uuid == str(made.uuid))


async def test_a_resume_far_behind_is_one_changed_frame_not_a_read_of_everything_missed(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "PAGE", 2)
    reads = 0
    real = feed_module.raw_events

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(feed_module, "raw_events", counting)
    first = await service.submit(app, ME, "sleeper", [0])
    for _ in range(30):
        await service.submit(app, ME, "sleeper", [0])
    old = [e for e in await events_of(app) if e.uuid == str(first.uuid)][0]
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add"}, last=old.id) as s:
        _, _, event_id = await s.until(1)  # it cannot tell without reading all: "changed", at the newest
        assert (await service.events(app, event_id, 10)).events == []  # a resume point after all of them
        assert reads <= feed_module.CATCH_UP + 3


async def test_the_reader_stops_when_the_last_watch_stream_closes(app: QueueTasks) -> None:
    web = create_app(app, token=TOKEN)
    feed = web.state.feeds(None)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as s:
        await s.until(1, "watching")
        assert feed.mode == "counts" and len(feed.polls) == 1  # it reads no event: it polls
    await asyncio.sleep(0.1)
    assert feed._task is None and feed.followers == 0  # no follower: no read of the backend


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_watch_stream_needs_the_token_and_a_filter_that_fits(app: QueueTasks) -> None:
    async with client(app, bearer=False) as c:
        assert (await c.get("/api/v1/events", params={"watch": "true"})).status_code == 401
    async with client(app) as c:
        for params, field in (({"watch": "true", "status": "done"}, "status"),
                              ({"task_name": "add"}, "task_name"),  # a filter of the every-event stream: none
                              ({"uuid": "x"}, "uuid"),
                              ({"watch": "true", "summary": "true"}, "summary"),
                              ({"watch": "true", "follow": "false"}, "follow"),  # it has no end
                              ({"watch": "true", "uuid": "a,,b"}, "uuid"),
                              ({"watch": "true", "uuid": ",".join(map(str, range(501)))}, "uuid")):
            r = await c.get("/api/v1/events", params=params)
            assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
        assert (await c.get("/api/v1/events", params={"watch": "true", "queue": "nope"})).status_code == 404
        doc = (await c.get("/api/v1/openapi.json")).json()
        named = {p["name"] for p in doc["paths"]["/events"]["get"]["parameters"]}
        assert {"watch", "task_name", "worker_id", "status", "uuid"} <= named


class Flaky:
    """The feed's backend reads (``feed.raw_events``) with a switch: while ``down``, each raises as a broker that is
    away does (the reader's read in progress returns first, as a blocking read of a broker does)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down, self.real = False, feed_module.raw_events
        monkeypatch.setattr(feed_module, "raw_events", self)

    async def __call__(self, *args: Any) -> Any:
        if self.down:
            raise service.Unavailable("broker away (test)")
        return await self.real(*args)


async def until(check: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_broker_error_while_a_watch_stream_catches_up_neither_hangs_nor_spins(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream resuming from an id reads the events it missed (its catch-up); the broker going away meanwhile
    ends it with the error (the browser reconnects), instead of a wait for ever or a loop without an await (a web
    server frozen at 100 % CPU); the feed it leaves starts clean."""
    monkeypatch.setattr(feed_module, "PAGE", 2)
    flaky = Flaky(monkeypatch)
    first = await service.submit(app, ME, "sleeper", [0])
    for _ in range(30):
        await service.submit(app, ME, "sleeper", [0])
    old = [e for e in await events_of(app) if e.uuid == str(first.uuid)][0]
    feed = feed_module.Feed(app, None)
    reads = 0

    async def catching_up(*args: Any) -> Any:  # the broker goes away at the stream's third read
        nonlocal reads
        reads += 1
        flaky.down = flaky.down or reads == 3
        return await flaky(*args)

    monkeypatch.setattr(feed_module, "raw_events", catching_up)
    got: list[tuple[str, str]] = []

    async def consume() -> None:
        async for signal in feed.watch(old.id, Watch({"task_name": "add"})):
            got.append(signal)

    with pytest.raises(service.Unavailable):
        await asyncio.wait_for(consume(), 5)
    assert got == [("watching", old.id)] and reads == 3
    flaky.down = False
    await asyncio.sleep(0.1)
    assert feed.followers == 0 and feed.error is None  # the last follower left: the next reader starts clean
    assert not feed.polls and feed._poller is None


@pytest.mark.parametrize("broker", ["memory", "redis"], indirect=True)
async def test_watch_streams_read_no_event_and_equal_watches_share_one_poll(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watch costs per tick and distinct filter, whatever the event rate (issue 13: reading every event of a
    draining fleet for one open tab cost the drain a fifth of its rate): no event is read for streams that start
    from now, equal watches are one poll, and a poll reads the page's query at most once per POLL_GAP."""
    reads, ticks = 0, 0
    real_read, real_tick = feed_module.raw_events, feed_module.tick

    async def counting_reads(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real_read(*args)

    async def counting_ticks(app_: Any, due: list[Any], *args: Any) -> None:
        nonlocal ticks
        ticks += sum(1 for p in due if p.watch.key == Watch({"task_name": "add"}).key)
        await real_tick(app_, due, *args)

    monkeypatch.setattr(feed_module, "raw_events", counting_reads)
    monkeypatch.setattr(feed_module, "tick", counting_ticks)
    web = create_app(app, token=TOKEN)
    feed = web.state.feeds(None)
    mine = await service.submit(app, ME, "sleeper", [0])
    async with contextlib.AsyncExitStack() as keep:
        streams = [await keep.enter_async_context(Stream(web, p)) for p in (
            {"watch": "true", "task_name": "add"}, {"watch": "true", "task_name": "add"},
            {"watch": "true", "uuid": str(mine.uuid)})]
        for s in streams:
            await s.until(1, "watching")
        assert len(feed.polls) == 2 and feed.mode == "counts"
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(40):  # a busy fleet the streams do not show
            await service.submit(app, ME, "sleeper", [0])
            await asyncio.sleep(0.03)
        took = loop.time() - start
        await service.submit(app, ME, "add", [1, 1])  # and then what two of them show: one read for both
        await streams[0].until(1)
        await streams[1].until(1)
        await asyncio.sleep(1.2)
        assert [s.changed() != [] for s in streams] == [True, True, False]
        assert reads == 0  # not one event read: no event object, no JSON scanned per event
        assert 1 <= ticks <= (loop.time() - start) / polls_module.POLL_GAP + 2, (ticks, took)


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_broker_error_is_not_told_to_streams_that_open_after_the_broker_is_back(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While followers stay connected (a hundred tabs reconnecting one after another) the reader never returns:
    its first good read after the error clears it, or every stream would get ``event: error`` until a restart."""
    flaky = Flaky(monkeypatch)
    web = create_app(app, token=TOKEN)
    feed = web.state.feeds(None)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as a:
        await a.until(1, "watching")
        feed._join(False)  # a follower that stays through it (a tab connecting: it has not looked yet)
        try:
            flaky.down = True
            await a.until(1, "error", timeout=5)  # the open stream hears it (the browser reconnects)
            flaky.down = False
            await until(lambda: feed.error is None and feed.origin != "", timeout=5)
            async with Stream(web, {"watch": "true", "task_name": "add"}) as b:
                await b.until(1, "watching")
                await service.submit(app, ME, "add", [1, 1])
                await b.until(1)
                assert [f for f in b.frames if f[1] == "error"] == []
        finally:
            feed._leave(False)


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_watch_stream_of_a_busy_fleet_that_matches_nothing_still_sends_keep_alives(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep-alives are written however busy the fleet (a proxy cuts a stream silent for a minute): the id alone,
    no event, moving the browser's resume point past what was searched."""
    from qtasks_fast.web import sse

    monkeypatch.setattr(sse, "KEEPALIVE", 1.0)
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as s:
        start = (await s.until(1, "watching"))[2]
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.6
        while loop.time() < end:  # steady traffic the stream does not match: the feed reads something each turn
            await service.submit(app, ME, "sleeper", [0])
            await asyncio.sleep(0.03)
        alive = [f for f in s.frames if f[1] == ""]
        assert len(alive) >= 2, s.frames
        assert s.changed() == []
        assert alive[-1][2] != start
        later = (await service.events(app, alive[-1][2], 1000)).events
        assert later and all(e.task_name != "add" for e in later)  # a resume point inside the traffic


@pytest.mark.parametrize("kind", [{"watch": "true"}, {"summary": "true"}, {}, {"follow": "false"}])
async def test_an_id_with_a_line_break_is_refused_and_never_echoed(app: QueueTasks, kind: dict[str, str]) -> None:
    """``after`` (or ``Last-Event-ID``) is echoed as an SSE id: with CR or LF it would write frames of its own."""
    from qtasks_fast.web.sse import changed_frame

    web = create_app(app, token=TOKEN)
    for bad in ("1-0\nevent: task\ndata: {}", "1-0\r\rdata: x", "$\n"):
        for params, last in (({**kind, "after": bad}, None), (kind, bad)):
            async with Stream(web, params, last=last) as s:
                assert s.status == 422, (params, last)
                assert msgspec.json.decode(s.buffer)["field"] == "after"
        with pytest.raises(ValueError):
            changed_frame(b"watching", bad)


def test_the_redis_event_id_parser_refuses_a_line_break() -> None:
    from qtasks_fast.backends.redis.query import _parse_event_id
    from qtasks_fast.querylib import invalid_event_id

    assert _parse_event_id("1-0.0.default") == (1, 0, "default", 0)
    for bad in ("1-0.0.default\r\nevent: x", "1-0.0.q\n"):
        with pytest.raises(ValueError, match=str(invalid_event_id(bad))[:20]):
            _parse_event_id(bad)


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_watch_of_a_bare_worker_id_hears_every_slot_of_it_as_the_tasks_filter_shows(
    app: QueueTasks,
) -> None:
    events = [TaskEvent(id=f"{i}-0", uuid=f"u{i}", task_name="add", queue="default", status="success", at=1.0,
                        worker_id=w) for i, w in enumerate(["w-3", "w", "wx", "w-", "w-1a", "w-1-2", None, "w-12"])]
    data = [msgspec.json.encode(e) for e in events]
    ids = [e.id for e in events]
    assert Watch({"worker_id": "w"}).newest(ids, data) == 7  # "w-12"
    assert Watch({"worker_id": "w"}).newest(ids[:7], data[:7]) == 1  # "w" itself; not wx, w-, w-1a, w-1-2
    assert Watch({"worker_id": "w-1"}).newest(ids, data) == 5  # "w-1-2": a slot of a worker named "w-1"
    assert Watch({"worker_id": "w-3"}).newest(ids, data) == 0
    async with client(app) as c:
        r = await c.get("/api/v1/events", params={"watch": "true", "worker_id": "w" * (NAME + 1)})
        assert r.status_code == 422 and r.json()["field"] == "worker_id"
        r = await c.get("/api/v1/events", params={"watch": "true", "task_name": "t" * (NAME + 1)})
        assert r.status_code == 422 and r.json()["field"] == "task_name"


def odd_events(rnd: random.Random, n: int) -> Iterator[TaskEvent]:
    """Events whose strings hold what could fool a byte search: quotes, backslashes, other fields' keys."""
    words = ["add", "a\"b", "x\\", '","queue":"q', "q", "é", "new", "w1", "w1-0", "w1-23", "w1-", "w1-2x", "w1-0-4",
             "w1-٣", ',"status":"new","at":', "}"]
    for i in range(n):
        yield TaskEvent(id=f"{i}-0", uuid=rnd.choice(words + [f"u{i % 7}"]), task_name=rnd.choice(words),
                        queue=rnd.choice(words), status=rnd.choice(words), at=float(i),
                        worker_id=rnd.choice([None, *words]))


def equal(event: TaskEvent, name: str, value: str) -> bool:
    """The Tasks filter's rule for one field: equal, and a worker id is also every slot of it ``<id>-<digits>``."""
    got = getattr(event, name)
    if name == "worker_id" and isinstance(got, str) and got.startswith(value + "-"):
        return re.fullmatch("[0-9]+", got[len(value) + 1:], re.ASCII) is not None
    return bool(got == value)


def test_a_watch_matches_the_events_json_exactly_as_a_field_by_field_check() -> None:
    rnd = random.Random(13)
    words = ["add", "a\"b", "x\\", '","queue":"q', "q", "new", "w1", "w1-0", "w1-23", "w1-", "w1-2x", "w1-0-4",
             ',"status":"new","at":', "}", "u3", "zzz"]
    for _ in range(1000):
        events = list(odd_events(rnd, rnd.randint(1, 40)))
        data = [msgspec.json.encode(e) for e in events]
        fields = {k: rnd.choice(words) for k in ("task_name", "queue", "worker_id", "status") if rnd.random() < 0.4}
        uuids = frozenset(rnd.sample(words, rnd.randint(0, 2)))

        want = max((i for i, e in enumerate(events) if e.uuid in uuids or (
            fields and all(equal(e, k, v) for k, v in fields.items()))), default=-1)
        if not fields and not uuids:
            want = len(events) - 1  # no filter: any event
        w = Watch(fields, uuids)
        assert w.newest([e.id for e in events], data) == want, (fields, uuids, events)


@pytest.mark.parametrize("page", ["cursor", "limit"])
async def test_a_table_paged_back_or_longer_than_the_default_page_hears_its_own_rows_change(
    app: QueueTasks, page: str
) -> None:
    """The poll reads the page the table shows (its ``limit`` and ``cursor``), not the filter's newest 50 rows: a
    row of the second page, or the 60th of a 60-row page, changing status is a change of that table."""
    for i in range(60):
        await service.submit(app, ME, "add", [i, i])
    first = await service.list_tasks(app, TaskFilter(task_name="add"), 50)
    assert first.cursor is not None
    older = (await service.list_tasks(app, TaskFilter(task_name="add"), 50, first.cursor)).tasks  # not the newest 50
    assert len(older) == 10
    params = {"watch": "true", "task_name": "add", **(
        {"cursor": first.cursor} if page == "cursor" else {"limit": "60"})}
    web = create_app(app, token=TOKEN)
    async with Stream(web, params) as s:
        await s.until(1, "watching")
        await service.cancel(app, ME, older[-1].uuid)  # on the page shown, not in the newest 50
        _, _, event_id = await s.until(1, timeout=2.5)
        await resumes_after(app, event_id, lambda e: e.uuid == older[-1].uuid and e.status == "cancel")
    async with Stream(web, {"watch": "true", "task_name": "add", "limit": "5"}) as s:  # the newest 5 only
        await s.until(1, "watching")
        await service.cancel(app, ME, older[0].uuid)
        await asyncio.sleep(1.2)
        assert s.changed() == []


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_a_watch_stream_page_is_checked_as_the_tasks_api_checks_it(app: QueueTasks) -> None:
    async with client(app) as c:
        for params, field in (({"watch": "true", "task_name": "add", "limit": "0"}, "limit"),
                              ({"watch": "true", "task_name": "add", "limit": "1001"}, "limit"),
                              ({"watch": "true", "task_name": "add", "cursor": "x"}, "cursor"),
                              ({"cursor": "1:x"}, "cursor")):  # a page of a watch stream only
            r = await c.get("/api/v1/events", params=params)
            assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
            if "watch" in params:  # the same rule as the Tasks API's
                r = await c.get("/api/v1/tasks", params={k: v for k, v in params.items() if k != "watch"})
                assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
        doc = (await c.get("/api/v1/openapi.json")).json()
        assert {"limit", "cursor"} <= {p["name"] for p in doc["paths"]["/events"]["get"]["parameters"]}


@pytest.mark.parametrize("error", ["service", "driver"])
async def test_a_failed_poll_is_told_to_its_own_followers_only(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    """A poll's read that fails ends the streams of that watch (their browsers reconnect); another watch's stream
    and a stream of every event on the same feed go on and never get ``event: error`` — also when the failure is
    an error the backend does not translate (a driver's own, for one watch's odd filter)."""
    real = polls_module._rows
    broken = True

    async def failing(app_: Any, fields: Any, page: Any) -> Any:
        if broken and dict(fields).get("task_name") == "fail":
            raise service.Unavailable("broker away (test)") if error == "service" else ValueError("driver (test)")
        return await real(app_, fields, page)

    monkeypatch.setattr(polls_module, "_rows", failing)
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as ok, Stream(web, {}) as every:
        await ok.until(1, "watching")
        async with Stream(web, {"watch": "true", "task_name": "fail"}) as bad:
            await bad.until(1, "error")
            assert [f for f in bad.frames if f[1] == "watching"] == []
        broken = False
        await service.submit(app, ME, "add", [1, 1])
        await ok.until(1)
        await every.until(1, "task")
        assert [f for s in (ok, every) for f in s.frames if f[1] == "error"] == []


async def test_an_unexpected_error_in_a_poll_neither_kills_the_poller_nor_leaves_streams_waiting(
    app: QueueTasks, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception that is no ServiceError (a bug, an error no translation knows) is logged; the streams of the
    polls it hit end with an error frame, and the poller goes on: a stream that opens later starts and hears its
    changes. A poller that died anyway is started again by the next stream."""
    real, calls = polls_module._rows, 0

    async def buggy(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug (test)")
        return await real(*args)

    monkeypatch.setattr(polls_module, "_rows", buggy)
    web = create_app(app, token=TOKEN)
    feed = web.state.feeds(None)
    with caplog.at_level("ERROR", logger="qtasks_fast"):
        async with Stream(web, {"watch": "true", "task_name": "add"}) as hit:
            await hit.until(1, "error")
            async with Stream(web, {"watch": "true", "task_name": "add"}) as later:
                await later.until(1, "watching")
                await service.submit(app, ME, "add", [1, 1])
                await later.until(1)
                assert feed._poller is not None
                feed._poller.cancel()  # as if it died: the next stream starts another
                with contextlib.suppress(asyncio.CancelledError):
                    await feed._poller
                async with Stream(web, {"watch": "true", "task_name": "fail"}) as third:
                    await third.until(1, "watching")
    # logged where it was caught: the poll's own read ("a watch poll's read failed"), or the poller's tick
    assert any("watch poll" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


async def test_a_tick_reads_at_most_a_few_records_at_once(app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records of a tick's uuids (``storage.get`` each: the contract reads one at a time) are read at most
    ``READS`` at once: PostgreSQL's pool (4 connections) is shared with the pages' requests."""
    made = [await service.submit(app, ME, "add", [i, i]) for i in range(40)]
    real, busy, most = app.storage.get, 0, 0

    async def get(*args: Any) -> Any:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        try:
            await asyncio.sleep(0)  # let the others start, if they may
            return await real(*args)
        finally:
            busy -= 1

    monkeypatch.setattr(app.storage, "get", get)
    web = create_app(app, token=TOKEN)
    uuids = ",".join(str(m.uuid) for m in made)
    async with Stream(web, {"watch": "true", "worker_id": "w", "uuid": uuids}) as s:
        await s.until(1, "watching")  # after the first tick: its 40 records read
        assert 1 <= most <= polls_module.READS


async def test_a_keep_alive_never_moves_the_resume_point_back(app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick in flight when a stream starts carries a tip older than the stream's ``watching`` id: its keep-alive
    must not send that tip (the browser's resume point would move back)."""
    feed = feed_module.Feed(app, None)
    real_events, real_rows = feed_module.events, polls_module._rows
    frozen, reader_waits, hold, held, go = False, asyncio.Event(), False, asyncio.Event(), asyncio.Event()

    async def reader_events(*args: Any) -> Any:  # the feed's reader: stopped on demand
        if frozen:
            reader_waits.set()
            await asyncio.Event().wait()
        return await real_events(*args)

    async def slow_rows(*args: Any) -> Any:
        if hold:
            held.set()
            await go.wait()
        return await real_rows(*args)

    async def newest() -> str:
        return (await real_events(app, "$", 1, 0.0, None)).cursor

    monkeypatch.setattr(feed_module, "events", reader_events)
    monkeypatch.setattr(polls_module, "_rows", slow_rows)
    monkeypatch.setattr(feed, "_newest_id", newest)
    got: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}

    async def consume(name: str) -> None:
        async for signal in feed.watch("$", Watch({"task_name": "add"})):
            got[name].append(signal)

    a = asyncio.create_task(consume("a"))
    b: asyncio.Task[None] | None = None
    try:
        await until(lambda: got["a"] != [])
        hold = True
        await service.submit(app, ME, "sleeper", [0])  # the feed moves: a tick starts and is held in its query
        await asyncio.wait_for(held.wait(), 5)
        frozen = True
        await asyncio.wait_for(reader_waits.wait(), 5)  # no tip newer than the held tick's from now on
        await service.submit(app, ME, "sleeper", [0])
        b = asyncio.create_task(consume("b"))
        await until(lambda: got["b"] != [])
        go.set()
        await until(lambda: any(kind == "alive" for kind, _ in got["b"]))
    finally:
        for t in (a, b):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
    (kind, start), *rest = got["b"]
    assert kind == "watching" and rest
    for _, event_id in rest:  # nothing is older than where it started: no event between the two
        assert (await service.events(app, event_id, 10)).events == [], (start, got["b"])


async def test_a_cursor_with_a_nul_is_a_position_not_a_failure_of_the_page_or_the_other_watches(
    app: QueueTasks,
) -> None:
    """A hand-edited cursor's uuid part may hold any character (``1:%00``): the Tasks API answers its page (none
    of the tasks is older), and a watch of that page polls without ending another watch's stream — on PostgreSQL,
    whose ``text`` cannot hold a NUL, as on the others."""
    await service.submit(app, ME, "add", [1, 1])
    async with client(app) as c:
        r = await c.get("/api/v1/tasks", params={"cursor": "1:\x00"})
        assert r.status_code == 200 and r.json()["tasks"] == [], r.text
    web = create_app(app, token=TOKEN)
    async with Stream(web, {"watch": "true", "task_name": "add"}) as ok:
        await ok.until(1, "watching")
        async with Stream(web, {"watch": "true", "task_name": "add", "cursor": "1:\x00"}) as odd:
            await odd.until(1, "watching")
            await service.submit(app, ME, "add", [2, 2])
            await ok.until(1)
        assert [f for s in (ok, odd) for f in s.frames if f[1] == "error"] == []
