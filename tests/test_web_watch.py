"""``GET /api/v1/events?watch=true`` (issue 13): what the Tasks and task pages follow. A "changed" frame, at most
one per 0.8 s, whose id is the newest event the stream's filter matches; nothing for an event it does not match;
resume with ``Last-Event-ID``; the filter checked before the stream starts. On memory, SQLite and Redis.

The streams are driven as ASGI calls in the test's own loop (httpx's ASGI transport waits for a response's end,
and a watch stream has none)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from apps.web_app import build
from apps.webkit import TOKEN, client

from qtasks_fast import QueueTasks, service
from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.service import feed as feed_module
from qtasks_fast.service.watch import Watch
from qtasks_fast.web import create_app

ME = service.Caller(who="test")


@pytest.fixture(params=["memory", "sqlite", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
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
            if "event" in fields:
                self.frames.append((asyncio.get_running_loop().time(), fields["event"], fields.get("id", "")))

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
        newest = [e for e in await events_of(app) if e.uuid == str(made.uuid)][-1]
        assert event_id == newest.id  # where a reconnect resumes


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
        last_add = [e for e in await events_of(app) if e.task_name == "add"][-1]
        await asyncio.sleep(1.0)
        got = s.changed()
        assert got and got[-1][2] == last_add.id  # the newest matching event, after the gap
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
        assert event_id == (await events_of(app))[-1].id


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
            assert event_id == [e for e in await events_of(app) if e.uuid == str(made.uuid)][-1].id


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
        assert feed.mode == "events"
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


def odd_events(rnd: random.Random, n: int) -> Iterator[TaskEvent]:
    """Events whose strings hold what could fool a byte search: quotes, backslashes, other fields' keys."""
    words = ["add", "a\"b", "x\\", '","queue":"q', "q", "é", "new", "w1", ',"status":"new","at":', "}"]
    for i in range(n):
        yield TaskEvent(id=f"{i}-0", uuid=rnd.choice(words + [f"u{i % 7}"]), task_name=rnd.choice(words),
                        queue=rnd.choice(words), status=rnd.choice(words), at=float(i),
                        worker_id=rnd.choice([None, *words]))


def test_a_watch_matches_the_events_json_exactly_as_a_field_by_field_check() -> None:
    rnd = random.Random(13)
    words = ["add", "a\"b", "x\\", '","queue":"q', "q", "new", "w1", ',"status":"new","at":', "}", "u3", "zzz"]
    for _ in range(1000):
        events = list(odd_events(rnd, rnd.randint(1, 40)))
        data = [msgspec.json.encode(e) for e in events]
        fields = {k: rnd.choice(words) for k in ("task_name", "queue", "worker_id", "status") if rnd.random() < 0.4}
        uuids = frozenset(rnd.sample(words, rnd.randint(0, 2)))

        want = max((i for i, e in enumerate(events) if e.uuid in uuids or (
            fields and all(getattr(e, k) == v for k, v in fields.items()))), default=-1)
        if not fields and not uuids:
            want = len(events) - 1  # no filter: any event
        cache: dict[Any, Any] = {}
        w = Watch(fields, uuids)
        assert w.newest([e.id for e in events], data, cache) == want, (fields, uuids, events)
        assert Watch(fields, uuids).newest([], [], cache) == want  # kept with the read, for every equal watch
        rows = frozenset(rnd.sample(words, 1))  # the same filter, other rows: the fields' search is shared
        want = max((i for i, e in enumerate(events) if e.uuid in rows or (
            fields and all(getattr(e, k) == v for k, v in fields.items()))), default=-1)
        assert Watch(fields, rows).newest([e.id for e in events], data, cache) == want
