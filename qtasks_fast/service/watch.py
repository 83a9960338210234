"""What a page watches in the event feed (a task name, queue, worker, status, some uuids), matched on the events'
JSON as the feed holds it, without an event object.

Why: a browser tab showing the Tasks table filtered on one task name needs to know "something I show changed",
not each of the fleet's events (60,000 a second at 20,000 tasks/s). The feed's reader reads every event once per
process; a watch asks each read once for the newest event it matches (:meth:`Watch.newest`), and the answer is
kept with the read for every follower with the same watch: a hundred tabs on one task's page cost one search.

How it stays cheap and exact: an event's JSON is byte for byte ``msgspec.json.encode(TaskEvent)``, fields in the
order id, uuid, task_name, queue, status, at, worker_id (``RawEventPage``). A field's value with the key that
follows it (``,"task_name":"add","queue":``) is an exact needle: a quote inside a string is always escaped, so
the needle cannot start inside a value, and it holds the whole value. A read's events are searched joined (one
``bytes.rfind`` from the end: the newest match first), an event checked for the other fields only on a hit. The
uuids of a read are indexed once (one regular expression over the joined JSON) for every watch of uuids.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from itertools import accumulate
from typing import Any

import msgspec

#: the uuid of each event in a read's joined JSON (field two of every event: one match per event) with the quote that
#: ends it; a uuid with an escape in its JSON (a quote, a backslash, a control character) gives its text up to the
#: backslash instead, a key no watch looks up (a watch of such a uuid searches for its needle: :meth:`Watch._newest`).
#: A pattern without alternation: 5x faster than one that follows escapes
_UUID = re.compile(rb',"uuid":"([^"\\]*["\\])')
#: each field a watch may name, with the key that follows it in an event's JSON (the end of its value)
_NEXT = {"task_name": b',"queue":', "queue": b',"status":', "status": b',"at":'}  # worker_id: the last (Watch)


def _joined(ids: list[str], data: list[bytes], cache: dict[Any, Any]) -> tuple[bytes, list[int]]:
    """A read's events as one bytes (no separator: no needle spans ``}{``) and where each starts."""
    found = cache.get("joined")
    if found is None:
        found = cache["joined"] = (b"".join(data), list(accumulate(map(len, data), initial=0)))
    return found  # type: ignore[no-any-return]


def _uuids(ids: list[str], data: list[bytes], cache: dict[Any, Any]) -> dict[bytes, int]:
    """Each uuid of a read (its JSON string's inside and the closing quote) -> the index of its newest event."""
    found = cache.get("uuids")
    if found is None:
        names = _UUID.findall(_joined(ids, data, cache)[0])
        found = cache["uuids"] = dict(zip(names, range(len(names))))
    return found  # type: ignore[no-any-return]


class Watch:
    """A follower's filter: an event matches when its uuid is one of ``uuids``, or when every field given
    (``task_name``, ``queue``, ``worker_id``, ``status``) is equal; with neither, every event matches. A
    ``worker_id`` ``w`` is also every slot of it, ``w-<digits>`` (the Tasks filter's rule: a bare ``--worker-id``).

    The Tasks page's rule (``static/live.js``): a row on screen changed, or an event its filters select."""

    __slots__ = ("escaped", "key", "needles", "uuids", "worker")

    def __init__(self, fields: dict[str, str], uuids: frozenset[str] = frozenset()) -> None:
        self.key = (tuple(sorted(fields.items())), uuids)
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
        self.uuids = [u + b'"' for u in inner if b"\\" not in u]  # as the index holds them
        #: the uuids the index of a read cannot hold (an escape in their JSON): searched as needles
        self.escaped = [b',"uuid":"%s","task_name":' % u for u in inner if b"\\" in u]

    def newest(self, ids: list[str], data: list[bytes], cache: dict[Any, Any]) -> int:
        """The index of the newest event of a read that matches (-1: none), found once per read for every
        follower with the same watch (``cache`` is the read's)."""
        hits = cache.setdefault("hits", {})
        found = hits.get(self.key)
        if found is None:
            found = hits[self.key] = self._newest(ids, data, cache)
        return found  # type: ignore[no-any-return]

    def _newest(self, ids: list[str], data: list[bytes], cache: dict[Any, Any]) -> int:
        best = -1
        if self.uuids:
            index = _uuids(ids, data, cache)
            best = max([index.get(u, -1) for u in self.uuids])
        if not self.needles and not self.escaped and not self.uuids:
            return len(ids) - 1  # no filter: any event
        joined, starts = _joined(ids, data, cache)
        for needle in self.escaped:
            at = joined.rfind(needle)
            if at >= 0:
                best = max(best, bisect_right(starts, at) - 1)
        if not self.needles:
            return best
        fields = cache.setdefault("fields", {})  # tabs with one filter and other rows search the fields once
        found = fields.get(self.key[0])
        if found is None:
            found = fields[self.key[0]] = _newest_with(self.needles, data, joined, starts, self.worker)
        return max(best, found)


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
