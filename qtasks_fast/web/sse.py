"""``GET /api/v1/events``: task status changes as server-sent events.

Each event's SSE ``id`` is the backend event feed's id (:meth:`TaskQueries.events`), so a browser that
reconnects sends ``Last-Event-ID`` and resumes right after the last event it got: no gap, no repeat (the feed
keeps the last 10,000 events per queue at least). Followers share one reader of the backend per server
(:mod:`qtasks_fast.service.feed`): a hundred open tabs cost the broker what one does, and each read is encoded
as frames once for all of them (:func:`encode_raw`, the feed's ``encode``), straight from the backend's JSON of
each event (``raw_events``: no event object on the way). ``follow=false`` sends
what is there and ends (a poll; what the tests use in process). A comment line every :data:`KEEPALIVE`
seconds keeps proxies from closing an idle stream.

``watch=true`` (the WebView's Tasks and task pages): not the events but a "changed" signal, at most one per 0.8 s,
when what the stream's filter shows changed (:func:`watching`; :mod:`qtasks_fast.service.polls`: a tab filtered on
one task name hears nothing of the others), its ``id`` the event stream's newest when the change was read, so a
page is refreshed when what it shows changed and a reconnect still resumes;
its keep-alive is a frame of the id alone (no event), so a tab that hears nothing still resumes from near now.
An ``after`` (or ``Last-Event-ID``) with CR or LF is refused (422): it would be echoed into a frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from itertools import chain, repeat
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from qtasks_fast import service
from qtasks_fast.abc.query import RawEventPage, TaskEvent
from qtasks_fast.querylib import decode_cursor
from qtasks_fast.service.feed import Summary, summary_now
from qtasks_fast.service.watch import ROWS, Watch
from qtasks_fast.web.api import Cursor, Page
from qtasks_fast.web.endpoints import parse
from qtasks_fast.web.openapi import ERRORS, REF

#: seconds between keep-alives of a stream that wrote nothing (a comment; on a watch stream the id alone, which
#: also moves the browser's resume point past what it searched: :func:`changed_frame`)
KEEPALIVE = 15.0
#: every stream's headers: a stream is never cached (each is live), and nginx must not buffer it (its default
#: would hold a frame until a buffer fills: a change on screen minutes late)
HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}
#: seconds between a follower's wake-ups without an event (qtasks_fast.service.feed)
BLOCK = 1.0
#: uuids a watch stream may name (a page of the Tasks table is at most a few hundred rows)
UUIDS = 500
#: the fields of a watch's filter (a stream of every event or of counts takes none of them but ``queue``)
WATCHED = ("task_name", "worker_id", "status", "uuid", "cursor")
#: events per read of a stream of events when ``limit`` is not given
EVENTS = 100
#: characters a watch's ``task_name`` or ``worker_id`` may have (a needle searched in every read of the fleet)
NAME = 256


class EventsQuery(msgspec.Struct, kw_only=True):
    #: resume after this event id (``Last-Event-ID`` wins); ``$`` (default): only what comes next; empty: oldest kept
    after: str = "$"
    queue: str | None = None
    #: events per read (default 100); with ``watch`` and a filter, the rows of the table's page (default 50, as
    #: ``GET /api/v1/tasks``)
    limit: Page | None = None
    #: keep the stream open for new events (default); false: send what is there and end
    follow: bool = True
    #: instead of each event, ``event: counts`` frames: the tasks finished per status this minute (a full state:
    #: the current one at once, then at most four a second while the fleet changes), ``id`` where the event stream
    #: was when they were read (a live counter's stream: the server reads no event for it)
    summary: bool = False
    #: instead of each event, ``event: changed`` frames: at most one per 0.8 s when what the filter below shows
    #: changed (the records of ``uuid``, the newest rows of all of ``task_name``, ``queue``, ``worker_id``,
    #: ``status`` given; neither: any event), ``id`` the newest event then, none while nothing changes; first an
    #: ``event: watching`` frame whose ``id`` is where it starts
    watch: bool = False
    task_name: Annotated[str, Meta(max_length=NAME)] | None = None
    #: a worker's consumer name ``<worker-id>-<slot>``, or a bare worker id: every slot of it (the Tasks filter)
    worker_id: Annotated[str, Meta(max_length=NAME)] | None = None
    status: Literal["new", "process", "success", "error", "cancel"] | None = None
    #: with ``watch``: task uuids, comma-separated (a page's rows, or one task's page), at most :data:`UUIDS`
    uuid: Annotated[str, Meta(max_length=64 * UUIDS)] | None = None
    #: with ``watch`` and a filter: the table's page starts after this cursor (a cursor ``GET /api/v1/tasks``
    #: returned): what the poll reads is that page, ``limit`` rows
    cursor: Cursor | None = None


def frame(event: TaskEvent) -> bytes:
    return b"id: %s\nevent: task\ndata: %s\n\n" % (event.id.encode(), msgspec.json.encode(event))


def encode_events(events: list[TaskEvent]) -> bytes:
    """The frames of a batch of event objects (what :func:`encode_raw` makes of the same events' JSON)."""
    return b"".join(map(frame, events))


def encode_raw(ids: list[str], data: list[bytes]) -> bytes:
    """The frames of a batch as the backend's ids and JSON (``raw_events``): the server's feed makes them once per
    read for every client (``Feeds(encode=)``), byte for byte :func:`encode_events` of the same events."""
    # zip/map/join: no Python code runs per event (a format per event cost about as much as reading it)
    return b"".join(chain.from_iterable(zip(repeat(b"id: "), map(str.encode, ids), repeat(b"\nevent: task\ndata: "),
                                            data, repeat(b"\n\n"))))


def counts_frame(summary: Summary) -> bytes:
    data = msgspec.json.encode({"minute": summary.minute, **summary.counts})
    return b"id: %s\nevent: counts\ndata: %s\n\n" % (summary.last.encode(), data)


def frames(batch: list[TaskEvent] | Summary | bytes) -> bytes:
    if isinstance(batch, bytes):  # already the feed's shared frames
        return batch
    return counts_frame(batch) if isinstance(batch, Summary) else encode_events(batch)


def watch_of(q: EventsQuery) -> Watch | None:
    """The stream's :class:`Watch` (None: not a watch stream); :class:`BadRequest` naming a field that does not
    fit (a filter without ``watch``, ``watch`` with ``summary`` or ``follow=false``, an empty uuid or too many)."""
    if not q.watch:
        for name in WATCHED:
            if getattr(q, name) is not None:
                raise service.BadRequest(name, f"{name}: a filter of watch=true streams only")
        return None
    if q.summary:
        raise service.BadRequest("summary", "summary: not with watch=true (a stream is one or the other)")
    if not q.follow:
        raise service.BadRequest("follow", "follow: a watch stream follows (poll the events without watch=true)")
    uuids = frozenset(q.uuid.split(",")) if q.uuid is not None else frozenset()
    if "" in uuids or len(uuids) > UUIDS:
        raise service.BadRequest("uuid", f"uuid: 1 to {UUIDS} task uuids, comma-separated, none empty")
    try:
        decode_cursor(q.cursor)  # what GET /api/v1/tasks refuses (e.g. a position out of range), refused here
    except ValueError as exc:
        raise service.BadRequest("cursor", f"cursor: {exc}") from None
    fields = {k: v for k in ("task_name", "queue", "worker_id", "status") if (v := getattr(q, k)) is not None}
    return Watch(fields, uuids, q.limit or ROWS, q.cursor)


def changed_frame(kind: bytes, event_id: str) -> bytes:
    """A watch stream's frame: ``event: <kind>`` (``watching``: where it starts; ``changed``: something the page
    shows changed), ``id`` the event a reconnect resumes after (``Last-Event-ID``), no data (a page fetches itself
    again: the id is all it needs). ``kind`` ``b""``: the id alone, a keep-alive that moves the browser's resume
    point without firing an event (SSE dispatches no event without data, it keeps the id).

    ``event_id`` may be the client's own ``after`` (the ``watching`` frame): one with CR or LF would end the line
    and let the text after it be frames of its own. The request is refused for it (422); this refuses it again."""
    if "\r" in event_id or "\n" in event_id:
        raise ValueError(f"an SSE id without CR or LF: {event_id!r}")
    if not kind:
        return b"id: %s\n\n" % event_id.encode()
    return b"id: %s\nevent: %s\ndata: {}\n\n" % (event_id.encode(), kind)


async def events(request: Request) -> Response:
    q = parse(EventsQuery, dict(request.query_params), "query")
    after: str | None = request.headers.get("last-event-id") or q.after or None
    if after is not None and ("\r" in after or "\n" in after):  # it is echoed in a frame: no line of its own
        raise service.BadRequest("after", "after: an event id (no CR or LF)")
    app = request.app.state.qtasks
    watch = watch_of(q)
    if watch is not None:
        await service.raw_events(app, after, 1, 0.0, q.queue)  # a bad id or queue: 422/404 before streaming
        return StreamingResponse(watching(request, after or "$", watch), media_type="text/event-stream",
                                 headers=HEADERS)
    # a bad id or queue: 422/404 before streaming (a stream of counts reads no event: one is enough to check)
    limit = q.limit or EVENTS
    first = await service.raw_events(app, after, 1 if q.summary else limit, 0.0, q.queue)

    async def stream() -> AsyncIterator[bytes]:
        page: RawEventPage = first
        yield b"retry: 2000\n\n"
        try:
            if q.summary and not q.follow:  # a full state: the current counts, whatever id it resumes from
                tip = (await service.events(app, "$", 1, 0.0, q.queue)).cursor
                yield frames(await summary_now(app, q.queue, tip))
                return
            while not q.summary:  # what is there (a follower of counts gets the current ones from the feed)
                if page.ids:
                    yield encode_raw(page.ids, page.data)
                if len(page.ids) < limit:
                    break
                page = await service.raw_events(app, page.cursor, limit, 0.0, q.queue)
            if not q.follow:
                return
            idle = 0.0
            # then what comes, from the server's one reader of the feed
            async for batch in request.app.state.feeds(q.queue).follow(page.cursor, q.summary, encoded=True):
                if batch:
                    idle = 0.0
                    yield frames(batch)
                    continue
                idle += BLOCK
                if idle >= KEEPALIVE:
                    idle = 0.0
                    yield b": keep-alive\n\n"
        except service.ServiceError as exc:  # the browser reconnects with Last-Event-ID
            yield b"event: error\ndata: %s\n\n" % msgspec.json.encode({"error": str(exc)})

    return StreamingResponse(stream(), media_type="text/event-stream", headers=HEADERS)


async def watching(request: Request, after: str, watch: Watch) -> AsyncIterator[bytes]:
    """A watch stream: ``watching`` (where it starts), then ``changed`` frames (the feed's :meth:`Feed.watch` on
    the server's one reader of every queue: a queue is one more field to match, not one more reader)."""
    yield b"retry: 2000\n\n"
    loop = asyncio.get_running_loop()
    quiet = loop.time()
    try:
        async for kind, found in request.app.state.feeds(None).watch(after, watch):
            if kind != "alive":
                yield changed_frame(kind.encode(), found)
                quiet = loop.time()
            elif loop.time() - quiet >= KEEPALIVE:  # a tick: the id alone (no event), where a reconnect resumes
                quiet = loop.time()
                yield changed_frame(b"", found)
    except service.ServiceError as exc:  # the browser reconnects with Last-Event-ID
        yield b"event: error\ndata: %s\n\n" % msgspec.json.encode({"error": str(exc)})


def openapi_path() -> dict[str, Any]:
    """The document's entry for this route (it is no JSON endpoint, so it is described by hand)."""
    params = [
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (
            ("after", {"type": "string"}),
            ("queue", {"type": "string"}),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ("follow", {"type": "boolean"}),
            ("summary", {"type": "boolean"}),
            ("watch", {"type": "boolean"}),
            ("task_name", {"type": "string", "maxLength": NAME}),
            ("worker_id", {"type": "string", "maxLength": NAME}),
            ("status", {"type": "string", "enum": ["new", "process", "success", "error", "cancel"]}),
            ("uuid", {"type": "string", "maxLength": 64 * UUIDS}),
            ("cursor", {"type": "string", "pattern": r"^-?[0-9]{1,18}:"}),
        )
    ]
    params.append({"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}})
    return {
        "get": {
            "summary": "Task status changes as server-sent events (resume with Last-Event-ID)",
            "operationId": "events",
            "parameters": params,
            "responses": {
                "200": {
                    "description": "text/event-stream: 'id', 'event: task' (or 'counts' with "
                    "summary=true; with watch=true 'watching' then 'changed': at most one per 0.8 s when what "
                    "uuid (comma-separated) or all of task_name, queue, worker_id, status show changed (their page: "
                    "limit, cursor), 'id' the "
                    "newest event then), "
                    "'data' (JSON)",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **{
                    str(code): {
                        "description": ERRORS[code],
                        "content": {"application/json": {"schema": {"$ref": REF.format(name="Error")}}},
                    }
                    for code in (401, 404, 422, 429, 503)
                },
            },
        }
    }
