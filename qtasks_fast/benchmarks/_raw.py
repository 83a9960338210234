"""Raw redis-py + hiredis stream loops for the ceiling suite, run as separate processes.

    python -m qtasks_fast.benchmarks._raw consumer URL STREAM GROUP NAME READY GO DONE COUNT
    python -m qtasks_fast.benchmarks._raw echo URL STREAM GROUP NAME READY
    python -m qtasks_fast.benchmarks._raw stamp URL STREAM GROUP NAME READY
    python -m qtasks_fast.benchmarks._raw bstamp URL LIST READY

``consumer`` drains ``STREAM`` with XREADGROUP COUNT n, acking each batch in the
same pipeline as the next read, until the producer has set ``DONE`` and a read
comes back empty; it prints ``{"count": n, "last_ack": unix_time}``.
``echo`` answers each entry ``{u: id}`` by RPUSH to ``<STREAM>:reply:<id>``
(what a task queue's "result visible to the caller" costs at the minimum).
``stamp`` reads one entry at a time with a blocking XREADGROUP and answers with the
``time.monotonic()`` at which the read returned (what "enqueue -> body starts" costs at the
minimum on streams); ``bstamp`` does the same with BRPOP on a list (the classic list queue).
The clock is system-wide, so the producer subtracts its own readings.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import redis


def _join(r: redis.Redis, stream: str, group: str, ready: str) -> None:
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    r.rpush(ready, 1)


def consumer(url: str, stream: str, group: str, name: str, ready: str, go: str, done: str, count: int) -> None:
    r = redis.Redis.from_url(url)
    _join(r, stream, group, ready)
    r.blpop([go], timeout=60)
    ids: list[bytes] = []
    acked = 0
    last_ack = 0.0
    while True:
        pipe = r.pipeline(transaction=False)
        if ids:
            pipe.xack(stream, group, *ids)
        pipe.exists(done)  # read before the stream: "done and nothing left" is then exact
        pipe.xreadgroup(group, name, {stream: ">"}, count=count, block=None if ids else 20)
        res = pipe.execute()
        if ids:
            acked += len(ids)
            last_ack = time.time()
        done_seen, reply = res[-2], res[-1]
        ids = [mid for mid, _ in reply[0][1]] if reply else []
        if not ids and done_seen:
            break
    print(json.dumps({"count": acked, "last_ack": last_ack}), flush=True)


def echo(url: str, stream: str, group: str, name: str, ready: str) -> None:
    r = redis.Redis.from_url(url)
    _join(r, stream, group, ready)
    while True:
        reply: Any = r.xreadgroup(group, name, {stream: ">"}, count=100, block=0)
        if not reply:
            continue
        pipe = r.pipeline(transaction=False)
        stop = False
        for mid, fields in reply[0][1]:
            if b"stop" in fields:
                stop = True
                continue
            pipe.rpush(f"{stream}:reply:".encode() + fields[b"u"], b"1")
            pipe.xack(stream, group, mid)
        pipe.execute()
        if stop:
            return


def stamp(url: str, stream: str, group: str, name: str, ready: str) -> None:
    r = redis.Redis.from_url(url)
    _join(r, stream, group, ready)
    while True:
        reply: Any = r.xreadgroup(group, name, {stream: ">"}, count=1, block=0)
        woke = time.monotonic()
        if not reply:
            continue
        mid, fields = reply[0][1][0]
        if b"stop" in fields:
            return
        pipe = r.pipeline(transaction=False)
        pipe.rpush(f"{stream}:reply:".encode() + fields[b"u"], repr(woke))
        pipe.xack(stream, group, mid)
        pipe.execute()


def bstamp(url: str, key: str, ready: str) -> None:
    r = redis.Redis.from_url(url)
    r.rpush(ready, 1)
    while True:
        got: Any = r.brpop([key], timeout=0)
        woke = time.monotonic()
        if got[1] == b"stop":
            return
        r.rpush(f"{key}:reply:".encode() + got[1], repr(woke))


def main(argv: list[str]) -> int:
    cmd, *rest = argv
    if cmd == "consumer":
        url, stream, group, name, ready, go, done, count = rest
        consumer(url, stream, group, name, ready, go, done, int(count))
    elif cmd == "echo":
        echo(*rest)
    elif cmd == "stamp":
        stamp(*rest)
    elif cmd == "bstamp":
        bstamp(*rest)
    else:
        print(f"unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
