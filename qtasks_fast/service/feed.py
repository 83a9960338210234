"""One reader of the app's event feed per process, fanned out to every follower (SSE clients, gRPC streams).

Why: with N browsers open, N readers blocking on the backend would make every status change N reads on the
broker the fleet drains through. A :class:`Feed` reads once, keeps the last :data:`KEPT` events, and wakes its
followers. A follower that resumes from an id the feed does not hold (older, or a reconnect before the feed
started) reads the backend directly until it reaches an event the feed holds, then joins it: the ids it gets
are the backend's, in order, without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.query import TaskEvent
from qtasks_fast.log import get_logger
from qtasks_fast.querylib import STATUSES
from qtasks_fast.service.errors import ServiceError
from qtasks_fast.service.fleet import events

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


SLOT = {s: i for i, s in enumerate(STATUSES)}


class Summary(msgspec.Struct, kw_only=True):
    """Status changes counted per status, up to and including the event ``last`` (resume from it)."""

    last: str
    counts: dict[str, int]

    @classmethod
    def of(cls, events: list[TaskEvent]) -> Summary:
        counts = dict.fromkeys(STATUSES, 0)
        for e in events:
            counts[e.status] = counts.get(e.status, 0) + 1
        return cls(last=events[-1].id, counts=counts)


class Feed:
    """The status changes of ``queue`` (None: every queue) of ``app``, read once for every follower."""

    def __init__(self, app: BaseQueueTasks, queue: str | None,
                 encode: Callable[[list[TaskEvent]], bytes] | None = None) -> None:
        self.app, self.queue = app, queue
        self.ring: deque[TaskEvent] = deque(maxlen=KEPT)
        #: the surface's wire form of a batch of events (SSE frames), made once per backend read and shared by
        #: every follower that asks ``encoded``: a hundred clients cost one encoding, not a hundred
        self.encode = encode
        #: (position of its first event, the encoded read) per backend read the ring still holds
        self.chunks: deque[tuple[int, bytes]] = deque()
        #: per event of the ring, the events per status before it (running totals since the feed started), and
        #: the totals now: a follower's summary of any stretch is a subtraction, whatever its length
        self.before: deque[tuple[int, ...]] = deque(maxlen=KEPT)
        self.cum = [0] * len(STATUSES)
        #: resume point (an event id, or the cursor the feed started at) -> absolute position after it
        self.pos: dict[str, int] = {}
        self.total = 0
        self.last = ""
        self.error: ServiceError | None = None
        self.followers = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()

    async def _read(self) -> None:
        cursor = "$"
        me = asyncio.current_task()
        while self._task is me:  # not `while True`: a client library may turn the cancel of a read into an error
            try:
                page = await events(self.app, cursor, PAGE, 0.0 if cursor == "$" else BLOCK, self.queue)
                self.error = None
            except ServiceError as exc:  # the broker is away: followers hear it; the feed retries
                self.error = exc
                self._wake()
                await asyncio.sleep(BLOCK)
                continue
            if cursor == "$":
                self.pos[page.cursor] = 0
                self.last = page.cursor
                self._started.set()
            if page.events and self.encode is not None:
                self.chunks.append((self.total, self.encode(page.events)))
                while self.chunks and self.chunks[0][0] < self.total + len(page.events) - KEPT:
                    self.chunks.popleft()
            for e in page.events:
                if len(self.ring) == KEPT:
                    self.pos.pop(self.ring[0].id, None)
                self.ring.append(e)
                self.before.append(tuple(self.cum))
                if e.status in SLOT:
                    self.cum[SLOT[e.status]] += 1
                self.total += 1
                self.pos[e.id] = self.total
                self.last = e.id
            cursor = page.cursor
            self._wake()
            if page.events and len(page.events) < PAGE and READ_GAP:
                await asyncio.sleep(READ_GAP)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _held(self, after: str) -> int | None:
        """The position after ``after`` when the ring still holds what follows it."""
        p = self.pos.get(after)
        return p if p is not None and p >= self.total - len(self.ring) else None

    async def _changes(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), BLOCK)

    def _summary(self, p: int) -> Summary:
        """The events from position ``p`` to now, counted per status (two lookups, not a walk)."""
        start = self.before[p - (self.total - len(self.ring))]
        return Summary(last=self.ring[-1].id, counts={s: n - m for s, n, m in zip(STATUSES, self.cum, start)})

    def _since(self, p: int) -> list[TaskEvent]:
        """The events from position ``p`` to now, walked from the newest end (a follower is near it)."""
        return list(itertools.islice(reversed(self.ring), self.total - p))[::-1]

    def _encoded(self, p: int) -> bytes:
        """The events from position ``p`` to now in the surface's wire form: the reads' shared encodings when
        ``p`` starts one (a follower that keeps up always does), else encoded for this follower."""
        assert self.encode is not None
        taken: list[bytes] = []
        for start, chunk in reversed(self.chunks):
            if start < p:
                break
            taken.append(chunk)
            if start == p:
                return b"".join(reversed(taken))
        return self.encode(self._since(p))

    async def follow(self, after: str | None, summary: bool = False,
                     encoded: bool = False) -> AsyncIterator[list[TaskEvent] | Summary | bytes]:
        """Events after ``after`` (an event id; ``"$"``: from now; None: the oldest kept), for ever, in batches
        (what arrived within :data:`COALESCE` seconds: one write to a client instead of one per event); an empty
        batch every :data:`BLOCK` seconds without one (a keep-alive tick). Raises the feed's
        :class:`ServiceError`. ``summary``: a :class:`Summary` per batch instead (a live counter needs no more,
        and costs the server the same however fast the fleet goes). ``encoded`` (a feed made with ``encode``):
        each batch as the bytes ``encode`` made of it, shared with the other followers."""
        self.followers += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._read())
        try:
            await asyncio.wait_for(self._started.wait(), 30)
            if after == "$":
                after = self.last
            while True:
                p = self._held(after) if after is not None else None
                if p is None:  # not in the ring: read the backend directly up to what the feed holds
                    page = await events(self.app, after, PAGE, 0.0, self.queue)
                    if page.events:
                        if summary:
                            yield Summary.of(page.events)
                        else:
                            yield self.encode(page.events) if encoded and self.encode else page.events
                    after = page.cursor
                    if len(page.events) < PAGE and self._held(after) is None:
                        await self._changes()  # the feed has not reached it yet (or it is a cursor of no event)
                    continue
                if p < self.total:
                    after = self.ring[-1].id
                    if summary:
                        yield self._summary(p)
                    else:
                        yield self._encoded(p) if encoded and self.encode else self._since(p)
                if self.error is not None:
                    raise self.error
                waited = self.total
                await self._changes()
                if self.total == waited:
                    yield []
                else:
                    await asyncio.sleep(COALESCE)
        finally:
            self.followers -= 1
            if not self.followers and self._task is not None:
                self._task.cancel()
                self._task = None
                self._started, self._changed = asyncio.Event(), asyncio.Event()
                self.ring.clear()
                self.chunks.clear()
                self.before.clear()
                self.cum = [0] * len(STATUSES)
                self.pos.clear()
                self.total = 0


class Feeds:
    """A surface's feeds of one app, one per queue filter (a server holds one of these)."""

    def __init__(self, app: BaseQueueTasks, encode: Callable[[list[TaskEvent]], bytes] | None = None) -> None:
        self.app, self.encode = app, encode
        self._feeds: dict[str | None, Feed] = {}

    def __call__(self, queue: str | None) -> Feed:
        if queue not in self._feeds:
            self._feeds[queue] = Feed(self.app, queue, self.encode)
        return self._feeds[queue]
