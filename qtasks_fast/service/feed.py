"""One reader of the app's event feed per process, fanned out to every follower (SSE clients, gRPC streams).

Why: with N browsers open, N readers blocking on the backend would make every status change N reads on the
broker the fleet drains through. A :class:`Feed` reads once, keeps the last :data:`KEPT` events, and wakes its
followers. A follower that resumes from an id the feed does not hold (older, or a reconnect before the feed
started) reads the backend directly until it reaches an event the feed holds, then joins it: the ids it gets
are the backend's, in order, without a gap or a repeat.

A follower of counts (``summary``: the WebView's Overview, Queues and Workers pages) needs to know that something
changed, not each change: while only such followers are connected the feed reads no event at all, it asks the
backend at most :data:`COUNTS_RATE` times a second whether its event stream moved (one event read) and, when it
did, for the tasks finished this minute (the contract's ``throughput``): a full state, so a page that reconnects
resumes by getting the current one. At 20,000 tasks/s that is a few round trips a second instead of decoding
60,000 events.

A follower that watches (:meth:`Feed.watch`: the WebView's Tasks and task pages) needs to know that something it
shows changed: it reads no event either. Each distinct :class:`~qtasks_fast.service.watch.Watch` is a
:class:`~qtasks_fast.service.polls.Poll` whose digest (the rows of the page of its filter a table shows, its
uuids' records) is read again at most every :data:`~qtasks_fast.service.polls.POLL_GAP` seconds while the event
stream moves, and its followers are told the newest change at most once per :data:`WATCH_GAP` seconds: a cost
per tick and filter, not per event (see :mod:`qtasks_fast.service.polls`). A poll's failed read is told to its
own followers only. Only a resume from an id (a reconnect) reads events: those it missed, matched against its
watch, at most :data:`CATCH_UP` pages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.log import get_logger
from qtasks_fast.service.errors import ServiceError, Unavailable
from qtasks_fast.service.fleet import events, raw_events, throughput
from qtasks_fast.service.polls import POLL_GAP, Poll, tick
from qtasks_fast.service.watch import Watch

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("feed")
#: events a feed keeps for followers that fall behind a little (a slow client, a page that reconnects)
KEPT = 5000
#: events per backend read
PAGE = 1000
#: seconds a read waits for the first event (also how often a follower is woken when nothing happens)
BLOCK = 1.0
#: seconds the reader lets events gather after a read that did not fill a page: a busy fleet is read in a few
#: large pages a second (each a round trip or two to the broker the workers drain through) rather than in as
#: many small ones as the loop can turn; an idle feed still wakes at the first event (its read blocks)
READ_GAP = 0.05
#: seconds a follower lets events gather after a change before it takes them: at most ten writes a second to
#: a client however fast the fleet goes (a change is still on screen well within a second)
COALESCE = 0.1
#: counts frames a second at most (a summary follower's page is still updated within a second)
COUNTS_RATE = 4
#: seconds between two "changed" signals to a watch follower at most (a page refreshes at most that often; the
#: newest change is signalled at the end of the gap, so a change is on screen within a second)
WATCH_GAP = 0.8
#: backend pages a watch follower resuming from an id reads at most before it is told "changed" at the feed's
#: newest event instead (a tab hidden for an hour must not read an hour of events)
CATCH_UP = 5
#: seconds between two looks at the watch polls that are due at most (a new poll is looked at at once)
TICK = 0.1


class Summary(msgspec.Struct, kw_only=True):
    """The tasks finished per status (``success``, ``error``, ``cancel``) in the minute starting at ``minute``
    (epoch seconds), read when the event stream had reached ``last`` (a resume point of the event stream): a
    full state, so a follower that misses one loses nothing."""

    last: str
    minute: int
    counts: dict[str, int]


async def summary_now(app: BaseQueueTasks, queue: str | None, last: str) -> Summary:
    """The current minute's finished tasks of ``queue`` (the contract's ``throughput``), labelled ``last``."""
    point = (await throughput(app, 1, queue))[-1]
    return Summary(
        last=last, minute=point.minute, counts={"success": point.success, "error": point.error, "cancel": point.cancel}
    )


class Chunk:
    """One backend read the feed still holds: its events' ids and JSON (``TaskQueries.raw_events``), and the
    surface's wire form of them once a follower asked (made once, shared by every follower)."""

    __slots__ = ("data", "encoded", "ids", "start")

    def __init__(self, start: int, ids: list[str], data: list[bytes]) -> None:
        self.start, self.ids, self.data = start, ids, data
        self.encoded: bytes | None = None


_decode_events = msgspec.json.Decoder(list[TaskEvent]).decode


def decoded(data: list[bytes]) -> list[TaskEvent]:
    """Events from their JSON (a follower that asked for objects, not the wire form)."""
    return _decode_events(b"[" + b",".join(data) + b"]")


class Feed:
    """The status changes of ``queue`` (None: every queue) of ``app``, read once for every follower.

    Events are held as the backend's ids and JSON (``raw_events``), never as one object each: the reader of a
    fleet draining 40,000 tasks a second takes 120,000 events a second, and an object per event was most of a
    core (issue 13). ``encode(ids, data)`` is the surface's wire form of a run of them (SSE frames)."""

    def __init__(
        self, app: BaseQueueTasks, queue: str | None,
        encode: Callable[[list[str], list[bytes]], bytes] | None = None,
    ) -> None:
        self.app, self.queue = app, queue
        #: the backend reads the feed holds (the last :data:`KEPT` events at least), oldest first
        self.chunks: deque[Chunk] = deque()
        #: the surface's wire form of a run of events, made once per read and shared by every follower that
        #: asks ``encoded``: a hundred clients cost one encoding, not a hundred
        self.encode = encode
        #: the cursor the reader started at (a resume point of no event: position 0)
        self.origin = ""
        self.total = 0
        self.last = ""
        #: the reader's reads of the stream's end started so far, and the number of the one ``last`` is the end as of
        #: (a tip with a higher number than a follower saw after an id came back is at least as new as that id)
        self.probes = self.last_probe = 0
        self.error: ServiceError | None = None
        self.followers = 0
        #: followers of counts, and watch followers; while they are all the followers, no event is read
        self.summaries = self.watchers = 0
        #: the watch followers' polls, one per distinct watch, and the task that ticks them
        self.polls: dict[Any, Poll] = {}
        self._poller: asyncio.Task[None] | None = None
        self._tick_now = asyncio.Event()
        #: the latest counts (summary followers get it once per new ``counts_seen``)
        self.state: Summary | None = None
        self.counts_seen = 0
        self._counted = 0.0
        self._pending = False
        #: what the reader is doing: "" (starting), "events" (every event) or "counts" (only whether it moved)
        self.mode = ""
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        #: set while the reader reads every event (what a follower of every event waits for)
        self._events_ready = asyncio.Event()
        self._kick = asyncio.Event()

    def _reset(self) -> None:
        self.chunks.clear()
        self.origin = ""
        self.total = 0

    async def _read(self) -> None:
        me = asyncio.current_task()
        while self._task is me:  # not `while True`: a client library may turn the cancel of a read into an error
            try:
                if self._every():
                    await self._read_events()
                else:
                    await self._read_counts()
                self.error = None
            except ServiceError as exc:  # the broker is away: followers hear it; the feed retries (the next page
                # read clears it: while followers are connected the reads above do not return)
                self.error = exc
                self._wake()
                await asyncio.sleep(BLOCK)

    async def _read_events(self) -> None:
        """Every event, a page at a time, until no follower wants every event."""
        self.mode, cursor = "events", "$"
        self._reset()
        while self._every():
            block = 0.0 if cursor == "$" else 1 / COUNTS_RATE if self._pending else BLOCK
            self.probes += 1
            probe = self.probes
            page = await raw_events(self.app, cursor, PAGE, block, self.queue)
            self.error = None  # the broker is back: followers that join from now on are not told it is away
            if cursor == "$":
                self.origin = self.last = page.cursor
                self._started.set()
                self._events_ready.set()
            if page.ids:
                self.chunks.append(Chunk(self.total, page.ids, page.data))
                self.total += len(page.ids)
                self.last = page.ids[-1]
                while self.chunks[0].start + len(self.chunks[0].ids) <= self.total - KEPT:
                    self.chunks.popleft()
            cursor = page.cursor
            if len(page.ids) < PAGE:  # read to the end: ``last`` is the end as of the read's start
                self.last_probe = probe
            if self.summaries and (page.ids or self._pending or self.state is None):
                await self._count(self.last)
            self._wake()
            if page.ids and len(page.ids) < PAGE and READ_GAP:
                await asyncio.sleep(READ_GAP)

    async def _read_counts(self) -> None:
        """Only whether the event stream moved (one event read), at most :data:`COUNTS_RATE` times a second,
        and then the counts, until a follower wants every event."""
        self.mode, tip = "counts", ""
        self._events_ready.clear()
        self._reset()
        while not self._every():
            self.probes += 1
            probe = self.probes
            moved = not tip or bool((await events(self.app, tip, 1, 0.0, self.queue)).events)
            if moved:
                self.probes += 1
                probe = self.probes
                tip = (await events(self.app, "$", 1, 0.0, self.queue)).cursor
                self.last = tip
            self.last_probe = probe  # unmoved: ``tip`` is still the end as of the check's start
            self.error = None  # the broker is back (see _read_events)
            if self.summaries and (moved or self._pending):
                await self._count(self.last)
            self._started.set()
            self._wake()
            with contextlib.suppress(asyncio.TimeoutError):  # a follower of every event ends the wait
                await asyncio.wait_for(self._kick.wait(), 1 / COUNTS_RATE)
            self._kick.clear()

    def _every(self) -> bool:
        """Whether a follower wants every event (not counts, not a watch)."""
        return self.followers > self.summaries + self.watchers

    async def _count(self, last: str) -> None:
        """The counts now, labelled ``last``, unless they were read less than 1/:data:`COUNTS_RATE` s ago (then
        they are pending: the reader reads them at the next turn after that, so the last change is counted)."""
        now = asyncio.get_running_loop().time()
        if now - self._counted < 1 / COUNTS_RATE and self.state is not None:
            self._pending = True
            return
        self._counted, self._pending = now, False
        self.state = await summary_now(self.app, self.queue, last)
        self.counts_seen += 1

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _held(self, after: str) -> int | None:
        """The position after ``after`` when the feed still holds what follows it (the newest read first: a
        follower that keeps up resumes from its last event; a reconnect looks through the rest)."""
        if after == self.origin and (not self.chunks or self.chunks[0].start == 0):
            return 0
        for chunk in reversed(self.chunks):  # a follower that took whole reads is at the end of one: no scan
            if chunk.ids[-1] == after:
                return chunk.start + len(chunk.ids)
        for chunk in reversed(self.chunks):  # a reconnect or a catch-up ends inside one (rare)
            with contextlib.suppress(ValueError):
                return chunk.start + chunk.ids.index(after) + 1
        return None

    async def _changes(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), BLOCK)

    def _since(self, p: int, encoded: bool) -> list[TaskEvent] | bytes:
        """The events from position ``p`` to now (a follower is near the newest end): with ``encoded``, in the
        surface's wire form, the reads' shared encodings for whole reads (a follower that keeps up only takes
        whole ones) and this follower's own for the part of a read it starts inside; else decoded."""
        taken: list[Chunk] = []
        for chunk in reversed(self.chunks):
            taken.append(chunk)
            if chunk.start <= p:
                break
        taken.reverse()
        cut = p - taken[0].start
        if not encoded or self.encode is None:
            return decoded([d for c in taken for d in (c.data[cut:] if c is taken[0] else c.data)])
        parts = [self.encode(taken[0].ids[cut:], taken[0].data[cut:])] if cut else []
        for chunk in taken[1:] if cut else taken:
            if chunk.encoded is None:
                chunk.encoded = self.encode(chunk.ids, chunk.data)
            parts.append(chunk.encoded)
        return b"".join(parts)

    async def follow(
        self, after: str | None, summary: bool = False, encoded: bool = False
    ) -> AsyncIterator[list[TaskEvent] | Summary | bytes]:
        """Events after ``after`` (an event id; ``"$"``: from now; None: the oldest kept), for ever, in batches
        (what arrived within :data:`COALESCE` seconds: one write to a client instead of one per event); an empty
        batch every :data:`BLOCK` seconds without one (a keep-alive tick). Raises the feed's
        :class:`ServiceError`. ``summary``: the counts instead (a :class:`Summary`, a full state: ``after`` is
        not needed), the current ones at once and then at most :data:`COUNTS_RATE` a second while the fleet
        changes (a live counter needs no more; while only such followers are connected no event is read).
        ``encoded`` (a feed made with ``encode``): each batch as the bytes ``encode`` made of it, shared with the
        other followers."""
        self._join(summary)
        try:
            await asyncio.wait_for(self._started.wait(), 30)
            if not summary:  # a reader of counts alone turns to reading every event
                self._kick.set()
                await asyncio.wait_for(self._events_ready.wait(), 30)
            if summary:
                async for s in self._follow_counts():
                    yield s
                return
            if after == "$":
                after = self.last
            while True:
                p = self._held(after) if after is not None else None
                if p is None:  # not in the feed: read the backend directly up to what the feed holds
                    page = await raw_events(self.app, after, PAGE, 0.0, self.queue)
                    if page.ids:
                        if encoded and self.encode:
                            yield self.encode(page.ids, page.data)
                        else:
                            yield decoded(page.data)
                    after = page.cursor
                    if len(page.ids) < PAGE and self._held(after) is None:
                        await self._changes()  # the feed has not reached it yet (or it is a cursor of no event)
                    continue
                if p < self.total:
                    after = self.last
                    yield self._since(p, encoded)
                if self.error is not None:
                    raise self.error
                waited = self.total
                await self._changes()
                if self.total == waited:
                    yield []
                else:
                    await asyncio.sleep(COALESCE)
        finally:
            self._leave(summary)

    def _join(self, summary: bool, watch: Watch | None = None) -> Poll | None:
        """A follower came (of counts, of ``watch``'s changes or of every event); the first starts the reader, the
        first of a watch its poll (and the task that ticks polls)."""
        self.followers += 1
        self.summaries += summary
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._read())
        if watch is None:
            return None
        self.watchers += 1
        poll = self.polls.get(watch.key)
        if poll is None:
            poll = self.polls[watch.key] = Poll(watch)
            self._tick_now.set()
        poll.users += 1
        if self._poller is None or self._poller.done():  # done: only if it died of a bug _polling did not catch
            self._poller = asyncio.get_running_loop().create_task(self._polling())
        return poll

    def _leave(self, summary: bool, watch: Watch | None = None) -> None:
        """A follower left; the last one stops the reader (no follower: no read of the backend at all), the last
        of a watch its poll, the last watch follower the task that ticks polls."""
        self.followers -= 1
        self.summaries -= summary
        if watch is not None:
            self.watchers -= 1
            poll = self.polls[watch.key]
            poll.users -= 1
            if not poll.users:
                del self.polls[watch.key]
            if not self.polls and self._poller is not None:
                self._poller.cancel()
                self._poller = None
        if not self.followers and self._task is not None:
            self._task.cancel()
            self._task = None
            self._started, self._changed = asyncio.Event(), asyncio.Event()
            self._events_ready.clear()
            self._reset()
            self.state, self.mode, self._counted, self._pending = None, "", 0.0, False
            self.error = None  # the next follower starts a reader of its own: it finds out for itself

    async def _polling(self) -> None:
        """Tick the polls that are due (:meth:`Poll.due`: the reader saw the event stream move) as long as any is
        open; a new poll at once. Its own task: a slow query never holds the reader (nor followers of events)."""
        me, loop = asyncio.current_task(), asyncio.get_running_loop()
        while self._poller is me:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._tick_now.wait(), TICK)
            self._tick_now.clear()
            if not self._started.is_set() or self.error is not None:
                continue  # no tip yet (the reader starts) or the broker is away (the reader tells the followers)
            tip, probe, now = self.last, self.last_probe, loop.time()
            due = [p for p in self.polls.values() if p.due(tip, now)]
            if not due:
                continue
            try:  # a failed read fails the polls that made it (Poll.error), told to their followers only
                await tick(self.app, due, tip, probe, now, self._newest_id)
            except Exception as exc:  # a bug, or an error no translation knows: the poller must go on
                log.exception("watch polls failed; polling again in %.1fs", POLL_GAP)
                for p in due:  # their followers end with it (a reconnect), instead of waiting for ever
                    p.fail(Unavailable(f"the watch poll failed ({type(exc).__name__}); see the server's log"), now)
                await asyncio.sleep(POLL_GAP)
            # a poll wakes its own followers when it changed (Poll.woken): no wake-up of every follower here

    async def _newest_id(self) -> str:
        """The event stream's newest id now (a resume point after every event so far)."""
        return (await events(self.app, "$", 1, 0.0, self.queue)).cursor

    async def _catch_up(self, after: str, watch: Watch) -> tuple[str, str]:
        """Read the events after ``after`` to the backend's end, at most :data:`CATCH_UP` pages: (the newest one
        ``watch`` matches or "", the resume point reached). Further behind: ("changed" at, and from) the newest."""
        pending, cursor = "", after
        for _ in range(CATCH_UP):
            page = await raw_events(self.app, cursor, PAGE, 0.0, self.queue)
            if page.ids and (i := watch.newest(page.ids, page.data)) >= 0:
                pending = page.ids[i]
            cursor = page.cursor
            if len(page.ids) < PAGE:
                return pending, cursor
        newest = await self._newest_id()
        return newest, newest

    async def watch(self, after: str, watch: Watch) -> AsyncIterator[tuple[str, str]]:
        """What ``watch`` sees after ``after`` (an event id; ``"$"``: from now), as ``(kind, id)``: first
        ``("watching", the resume point it starts at)`` (the event stream's newest when ``after`` is ``"$"``);
        then ``("changed", the newest event when the change was read)`` at most once per :data:`WATCH_GAP`
        seconds (a burst of changes is one signal, then one per gap while it lasts; the last change is always
        signalled); and ``("alive", a resume point)`` when nothing else was yielded for :data:`BLOCK` seconds,
        however busy the fleet (a keep-alive tick: a stream that sees no change still has to write now and then,
        or a proxy cuts it), its id a point every change up to which was signalled (a reconnect from there
        misses nothing), never older than one sent before (a browser's resume point moves forward only). Raises
        the feed's :class:`ServiceError`, and its poll's (:attr:`Poll.error`: a read of this watch's that failed).

        No event is read for it: its poll (one per distinct watch, :mod:`qtasks_fast.service.polls`) reads what
        the page shows when the event stream moved. How a start misses nothing: the poll's digest is read first,
        then the events from ``after`` to the backend's end (:meth:`_catch_up`; none from ``"$"``: the newest
        event read after the digest), so every change is either in those events or in a later digest (one in both
        is signalled twice at most)."""
        poll = self._join(False, watch)
        assert poll is not None
        try:
            while poll.digest is None:  # the state a change is seen against (the poll's first tick)
                if (error := self.error or poll.error) is not None:
                    raise error
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(poll.woken.wait(), BLOCK)
            changes = poll.changes
            now_on = after == "$"
            if now_on:  # from the newest event after the digest: a later change is in a later digest
                after = await self._newest_id()
            yield "watching", after
            pending, alive = ("", after) if now_on else await self._catch_up(after, watch)
            # a tip the reader started reading after `alive` came back is at least as new: only such a tip moves it
            seen = later = self.probes
            loop = asyncio.get_running_loop()
            sent, quiet = -WATCH_GAP, loop.time()
            while True:
                if (error := self.error or poll.error) is not None:
                    raise error
                if poll.changes != changes:  # read after the tick that saw it: a tip read later is newer
                    changes, pending, later = poll.changes, poll.changed, self.probes
                if poll.tip_probe > seen:
                    alive, seen = poll.tip, poll.tip_probe
                now = loop.time()
                if pending and now - sent >= WATCH_GAP:
                    sent = quiet = now
                    yield "changed", pending
                    if later > seen:  # a poll's change (not the catch-up's, older than `alive`): where it resumes
                        alive, seen = pending, later
                    pending = ""
                    continue
                if not pending and now - quiet >= BLOCK:  # every change up to `alive` signalled (no await since)
                    quiet = now
                    yield "alive", alive
                    continue
                with contextlib.suppress(asyncio.TimeoutError):  # woken by a change (an error: at the timeout)
                    await asyncio.wait_for(poll.woken.wait(),
                                           WATCH_GAP - (now - sent) if pending else BLOCK - (now - quiet))
        finally:
            self._leave(False, watch)

    async def _follow_counts(self) -> AsyncIterator[Summary | list[TaskEvent]]:
        seen = 0
        while True:
            if self.error is not None:
                raise self.error
            if self.state is not None and self.counts_seen != seen:
                seen = self.counts_seen
                yield self.state
            waited = self.counts_seen
            await self._changes()
            if self.counts_seen == waited:
                yield []


class Feeds:
    """A surface's feeds of one app, one per queue filter (a server holds one of these)."""

    def __init__(
        self, app: BaseQueueTasks, encode: Callable[[list[str], list[bytes]], bytes] | None = None
    ) -> None:
        self.app, self.encode = app, encode
        self._feeds: dict[str | None, Feed] = {}

    def __call__(self, queue: str | None) -> Feed:
        if queue not in self._feeds:
            self._feeds[queue] = Feed(self.app, queue, self.encode)
        return self._feeds[queue]
