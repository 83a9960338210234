"""What a page watches (a task name, queue, worker, status, some uuids; the page of a table), and which events of
a read it matches, on the events' JSON as the feed holds it, without an event object.

Who asks: a watch stream that resumes from an id (a reconnect, :meth:`Feed._catch_up
<qtasks_fast.service.feed.Feed._catch_up>`) reads the events it missed and asks each read once for the newest event
its watch matches (:meth:`Watch.newest`); a stream's live changes come from its poll instead
(:mod:`qtasks_fast.service.polls`, keyed by :attr:`Watch.key`), which reads no event.

How it stays cheap and exact: an event's JSON is byte for byte ``msgspec.json.encode(TaskEvent)``, fields in the
order id, uuid, task_name, queue, status, at, worker_id (``RawEventPage``). A field's value with the key that
follows it (``,"task_name":"add","queue":``) is an exact needle: a quote inside a string is always escaped, so
the needle cannot start inside a value, and it holds the whole value. A read's events are searched joined (one
``bytes.rfind`` from the end: the newest match first), an event checked for the other fields only on a hit. The
uuids of a read are indexed once per search (one regular expression over the joined JSON).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate

import msgspec

#: the uuid of each event in a read's joined JSON (field two of every event: one match per event) with the quote that
#: ends it; a uuid with an escape in its JSON (a quote, a backslash, a control character) gives its text up to the
#: backslash instead, a key no watch looks up (a watch of such a uuid searches for its needle: :meth:`Watch.newest`).
#: A pattern without alternation: 5x faster than one that follows escapes
_UUID = re.compile(rb',"uuid":"([^"\\]*["\\])')
#: each field a watch may name, with the key that follows it in an event's JSON (the end of its value)
_NEXT = {"task_name": b',"queue":', "queue": b',"status":', "status": b',"at":'}  # worker_id: the last (Watch)


def _uuids(joined: bytes) -> dict[bytes, int]:
    """Each uuid of a read (its JSON string's inside and the closing quote) -> the index of its newest event."""
    names = _UUID.findall(joined)
    return dict(zip(names, range(len(names))))


#: rows of a table's page when its watch names none (the Tasks page's default page)
ROWS = 50


class Watch:
    """A follower's filter: an event matches when its uuid is one of ``uuids``, or when every field given
    (``task_name``, ``queue``, ``worker_id``, ``status``) is equal; with neither, every event matches. A
    ``worker_id`` ``w`` is also every slot of it, ``w-<digits>`` (the Tasks filter's rule: a bare ``--worker-id``).

    ``limit`` and ``cursor`` (with fields only: a table) are the page of that filter the table shows, what its
    poll reads (a table paged back, or longer than the default page, hears its own rows change). Events are
    matched on the filter alone: a resume hears of a change anywhere in the filter (at most a refresh too many).

    The Tasks page's rule (``static/live.js``): a row on screen changed, or an event its filters select."""

    __slots__ = ("escaped", "key", "needles", "page", "uuids", "worker")

    def __init__(self, fields: dict[str, str], uuids: frozenset[str] = frozenset(), limit: int = ROWS,
                 cursor: str | None = None) -> None:
        #: the page of the fields' rows a table shows: (limit, cursor)
        self.page = (limit, cursor)
        #: equal keys are one poll: (fields, uuids, page: None without fields)
        self.key = (tuple(sorted(fields.items())), uuids, self.page if fields else None)
        self.needles = [b',"%s":%s%s' % (name.encode(), msgspec.json.encode(value), _NEXT[name])
                        for name, value in sorted(fields.items()) if name != "worker_id"]
        #: a worker's events: the needle is its id's JSON without the closing quote (it and every slot of it),
        #: an event checked whole on a hit (not ``"w"`` or ``"w-<digits>"``, e.g. ``"wx"``: no match)
        self.worker: re.Pattern[bytes] | None = None
        if "worker_id" in fields:
            start = b',"worker_id":' + msgspec.json.encode(fields["worker_id"])[:-1]
            self.needles.append(start)
            self.worker = re.compile(re.escape(start) + rb'(?:-[0-9]+)?"\}')
        inner = [msgspec.json.encode(u)[1:-1] for u in sorted(uuids)]
        self.uuids = [u + b'"' for u in inner if b"\\" not in u]  # as the index of a read holds them
        #: the uuids the index of a read cannot hold (an escape in their JSON): searched as needles
        self.escaped = [b',"uuid":"%s","task_name":' % u for u in inner if b"\\" in u]

    def newest(self, ids: list[str], data: list[bytes]) -> int:
        """The index of the newest event of a read (its ids and JSON) that matches (-1: none)."""
        if not self.needles and not self.escaped and not self.uuids:
            return len(ids) - 1  # no filter: any event
        joined, best = b"".join(data), -1  # no separator: no needle spans ``}{``
        if self.uuids:
            index = _uuids(joined)
            best = max([index.get(u, -1) for u in self.uuids])
        if not self.needles and not self.escaped:
            return best
        starts = list(accumulate(map(len, data), initial=0))
        for needle in self.escaped:
            at = joined.rfind(needle)
            if at >= 0:
                best = max(best, bisect_right(starts, at) - 1)
        if not self.needles:
            return best
        return max(best, _newest_with(self.needles, data, joined, starts, self.worker))


def _newest_with(
    needles: list[bytes], data: list[bytes], joined: bytes, starts: list[int], worker: re.Pattern[bytes] | None
) -> int:
    """The index of the newest event of a read holding every one of ``needles`` (-1: none) and matching
    ``worker`` (None: any)."""
    first = needles[0] if len(needles) == 1 else min(needles, key=joined.count)  # the rarest first
    others = [n for n in needles if n is not first]
    end = len(joined)
    while True:
        at = joined.rfind(first, 0, end)
        if at < 0:
            return -1
        i = bisect_right(starts, at) - 1
        if all(n in data[i] for n in others) and (worker is None or worker.search(data[i])):
            return i
        end = starts[i]
