"""Backend-neutral pieces of the query side (:mod:`qtasks_fast.abc.query`) that every backend must get the
same: the page cursor, worker-id matching, the error line, the throughput window, the limits.

Why one module: the contract suite checks that memory, SQLite and Redis answer alike; the parts that are
pure rules (not storage) live here once, so they cannot drift between backends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from qtasks_fast.abc.query import SEARCHED, TaskFilter, TaskPage, ThroughputPoint

#: every status a record can have, in the order counts list them
STATUSES = ("new", "process", "success", "error", "cancel")
FINISHED = frozenset(("success", "error", "cancel"))
MAX_LIMIT = 1000
#: the largest number a cursor or an event id may hold: what SQLite and Redis keep as an integer (64 bits)
MAX_POSITION = 2**63 - 1
#: the longest throughput window, in minutes (a week; finished records rarely outlive ``result_ttl``, a day)
MAX_MINUTES = 7 * 24 * 60
#: events kept per queue at least (older ones are trimmed; see each backend's docstring)
EVENTS_KEPT = 10_000


def check_limit(limit: int) -> int:
    """``limit`` within 1..1000, or a clear error (a dashboard passing 0 or 10**6 is a bug, not a wish)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}; page with the returned cursor")
    return limit


def to_ms(t: float) -> int:
    """Wall time in integer milliseconds: the precision every backend keeps for ordering and bounds."""
    return int(round(t * 1000))


def encode_cursor(created_ms: int, uuid: str) -> str:
    """The position after a row: its creation time (ms) and uuid. Opaque to callers."""
    return f"{created_ms}:{uuid}"


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    """``(created ms, uuid)`` of a cursor from :func:`encode_cursor`; a malformed one is a caller's bug."""
    if cursor is None:
        return None
    ms, sep, uuid = cursor.partition(":")
    digits = ms[1:] if ms.startswith("-") else ms
    if not sep or not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or abs(int(ms)) > MAX_POSITION:
        raise ValueError(f"invalid task list cursor {cursor!r}: pass back the cursor of the previous page")
    return int(ms), uuid


def invalid_event_id(after: str) -> ValueError:
    """The one error every backend gives for an event id it did not hand out (edited by hand, or past 64 bits)."""
    return ValueError(f"invalid event id {after!r}: pass an event's id, a page's cursor, None or '$'")


def event_number(text: str) -> int | None:
    """The non-negative integer in ``text`` (an event id's part), None when it is not one a backend can hold."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > MAX_POSITION:
        return None
    return int(text)


def worker_matches(wanted: str, worker: str | None) -> bool:
    """The record's worker is ``wanted`` exactly, or ``wanted`` is a bare worker id and the record's worker
    is one of its slots (``<wanted>-<digits>``)."""
    if worker is None:
        return False
    if worker == wanted:
        return True
    n = len(wanted)
    return worker.startswith(wanted) and len(worker) > n + 1 and worker[n] == "-" and worker[n + 1:].isdigit()


#: characters of the error line a list row carries (the whole traceback is in the task's detail)
ERROR_LINE_MAX = 500


def error_line(traceback: str | None) -> str | None:
    """The last non-empty line of a traceback (``"ValueError: bad"``), for a list row; cut to
    :data:`ERROR_LINE_MAX` characters ending in ``…``, so that a task that raised a 200 kB message does not
    make a page of 1,000 rows 200 MB (or a terminal table 20,000 lines)."""
    if not traceback:
        return None
    for line in reversed(traceback.splitlines()):
        if line.strip():
            line = line.strip()
            return line if len(line) <= ERROR_LINE_MAX else line[:ERROR_LINE_MAX - 1] + "…"
    return None


def error_matches(needle: str | None, traceback: str | None) -> bool:
    """``TaskFilter.error_contains``: ``needle`` in the traceback ignoring case (Unicode case, ``"ärger"`` finds
    ``"Ärger"``); None or ``""`` (an empty search box) is no filter, records without a traceback included."""
    return not needle or needle.lower() in (traceback or "").lower()


def within(value: float | None, after: float | None, before: float | None) -> bool:
    """``[after, before)`` on ``value``; a missing value never matches a bound."""
    if after is None and before is None:
        return True
    if value is None:
        return False
    return (after is None or value >= after) and (before is None or value < before)


def matches(f: TaskFilter, *, name: str, status: str, queue: str, worker: str | None, traceback: str | None,
            created: float, finished: float | None, ignore_status: bool = False) -> bool:
    """Every field of ``f`` against one record (in-process backends; SQL backends translate the same rules)."""
    return ((f.task_name is None or name == f.task_name)
            and (ignore_status or f.status is None or status == f.status)
            and (f.queue is None or queue == f.queue)
            and (f.worker_id is None or worker_matches(f.worker_id, worker))
            and error_matches(f.error_contains, traceback)
            and within(created, f.created_after, f.created_before)
            and within(finished, f.finished_after, f.finished_before))


#: records a request with a filter no index narrows examines at most (all its queues together; TaskPage.partial)
SCAN_BUDGET = 10_000


def unindexed(f: TaskFilter) -> bool:
    """Does ``f`` hold a field no backend index narrows (worker, error text, finished time)? Such a filter is
    checked record by record, so a request searches only so many (TaskPage.partial)."""
    return bool(f.worker_id or f.error_contains or f.finished_after is not None or f.finished_before is not None)


def indexed_part(f: TaskFilter) -> TaskFilter:
    """``f`` without the fields :func:`unindexed` looks at: the candidates a bounded search walks."""
    return TaskFilter(task_name=f.task_name, status=f.status, queue=f.queue, created_after=f.created_after,
                      created_before=f.created_before)


async def bounded_counts(page: Callable[[str | None], Awaitable[TaskPage]],
                         searched_to: Callable[[tuple[int, str]], Awaitable[int]], budget: int) -> dict[str, int]:
    """Counts per status of a filter no index narrows (SQL backends): the matches of the pages ``page(cursor)``
    (each one a bounded search of up to MAX_LIMIT rows, every status) until the end, a partial page, or
    ``budget // MAX_LIMIT`` pages; when it stopped early, the key ``SEARCHED`` says how many records it covered
    (``searched_to(position)`` counts them down to a cursor's position)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    cursor: str | None = None
    for _ in range(max(1, budget // MAX_LIMIT)):
        got = await page(cursor)
        for t in got.tasks:
            counts[t.status] += 1
        if got.partial:
            return counts | {SEARCHED: got.searched or 0}
        if got.cursor is None:
            return counts
        cursor = got.cursor
    at = decode_cursor(cursor)
    assert at is not None
    return counts | {SEARCHED: await searched_to(at)}


def minute_window(minutes: int, now: float | None = None) -> list[int]:
    """The starts (epoch seconds, multiples of 60) of the last ``minutes`` minutes, the current one last."""
    if not 1 <= minutes <= MAX_MINUTES:  # like a page's limit: 10**7 points is a caller's bug, not a chart
        raise ValueError(f"minutes must be between 1 and {MAX_MINUTES} (a week), got {minutes}")
    current = int((time.time() if now is None else now) // 60 * 60)
    return [current - 60 * i for i in range(minutes - 1, -1, -1)]


def throughput_points(window: list[int], counts: dict[tuple[int, str], int]) -> list[ThroughputPoint]:
    """Points for every minute of ``window`` from ``{(minute, status): n}`` (missing minutes are zeros)."""
    return [ThroughputPoint(minute=m, success=counts.get((m, "success"), 0), error=counts.get((m, "error"), 0),
                            cancel=counts.get((m, "cancel"), 0)) for m in window]
