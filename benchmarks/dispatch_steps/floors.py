"""Floors of the worker's wake -> body path (issue 16, point 1): how soon can a consumer *of each design* run its
code after an XADD, on this machine, next to the raw sync consumer the dispatch suite compares with?

Each consumer process blocks in ``XREADGROUP ... BLOCK 0 COUNT 1`` on a stream of its own and stamps
``time.monotonic()`` where a task body would start; the producer (sync redis-py, as in the dispatch suite) times
XADD called -> stamp. Kinds alternate in blocks of 100 so machine swings hit all alike.

* ``sync``   — redis-py's blocking client (the dispatch suite's ``raw streams``);
* ``aio``    — uvloop + redis.asyncio's ``xreadgroup`` (StreamReader, the fetch Task woken one loop turn after the
  bytes arrive), stamped in that Task;
* ``aio+1``  — the same, stamped one more loop turn later (the eager runner's wake-up after ``dispatch``): our
  worker's shape without its code;
* ``proto``  — uvloop + an ``asyncio.Protocol`` feeding ``hiredis.Reader``; stamped inside ``data_received``
  (no loop turn between the bytes and the body);
* ``proto+1`` — the same, stamped in a Task woken by a future set in ``data_received`` (one loop turn);
* ``proto+2`` — that Task wakes another Task (the eager runner) through a future: two loop turns: our worker's
  shape (h16d's ``blockread.py``, which started the batch in ``data_received`` instead, was measured, not merged).

Usage: ``python floors.py [trips per kind per round] [rounds]`` (a private redis-server on a free port).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from qtasks_fast.benchmarks.common import PrivateRedis

KINDS = ("sync", "aio", "aio+1", "proto", "proto+1", "proto+2")
GROUP = b"g"


def _reply(r: redis.Redis, stream: str, fields: dict, woke: float) -> None:
    r.rpush(f"{stream}:reply:".encode() + fields[b"u"], repr(woke))


def consume(port: int, kind: str) -> None:
    stream = f"floor:{kind}"
    r = redis.Redis(port=port)
    r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    r.rpush(f"{stream}:ready", 1)
    if kind == "sync":
        while True:
            got = r.xreadgroup(GROUP, "c", {stream: ">"}, count=1, block=0)
            woke = time.monotonic()
            _reply(r, stream, got[0][1][0][1], woke)
        return
    import uvloop

    uvloop.install()
    asyncio.run(_aio(port, kind, stream, r) if kind.startswith("aio") else _proto(port, kind, stream, r))


async def _aio(port: int, kind: str, stream: str, r: redis.Redis) -> None:
    import redis.asyncio as aioredis

    a = aioredis.Redis(port=port)
    while True:
        got = await a.xreadgroup(GROUP, "c", {stream: ">"}, count=1, block=0)
        if kind == "aio+1":
            await asyncio.sleep(0)
        woke = time.monotonic()
        _reply(r, stream, got[0][1][0][1], woke)


async def _proto(port: int, kind: str, stream: str, r: redis.Redis) -> None:
    import hiredis

    loop = asyncio.get_running_loop()
    cmd = b"".join(f"${len(p)}\r\n".encode() + p + b"\r\n" for p in (
        b"XREADGROUP", b"GROUP", GROUP, b"c", b"COUNT", b"1", b"BLOCK", b"0", b"STREAMS", stream.encode(), b">"))
    cmd = b"*11\r\n" + cmd
    woken: list[asyncio.Future] = []

    class P(asyncio.Protocol):
        def __init__(self) -> None:
            self.reader = hiredis.Reader()

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            self.t = transport
            transport.write(cmd)

        def data_received(self, data: bytes) -> None:
            self.reader.feed(data)
            got = self.reader.gets()
            if got is False:
                return
            if kind == "proto":
                woke = time.monotonic()
                _reply(r, stream, dict(zip(got[0][1][0][1][::2], got[0][1][0][1][1::2])), woke)
            else:
                woken[0].set_result(got)
            self.t.write(cmd)

    await loop.create_connection(P, "127.0.0.1", port)
    runner: list[asyncio.Future] = [loop.create_future()]

    async def run() -> None:  # proto+2: the second Task, woken by the first
        while True:
            got = await runner[0]
            runner[0] = loop.create_future()
            woke = time.monotonic()
            _reply(r, stream, dict(zip(got[0][1][0][1][::2], got[0][1][0][1][1::2])), woke)

    second = asyncio.ensure_future(run())
    while True:
        woken[:] = [loop.create_future()]
        got = await woken[0]
        if kind == "proto+2":
            runner[0].set_result(got)
            await asyncio.sleep(0)
            continue
        woke = time.monotonic()
        _reply(r, stream, dict(zip(got[0][1][0][1][::2], got[0][1][0][1][1::2])), woke)
    second.cancel()


def main() -> None:
    trips, rounds = (int(a) for a in (sys.argv[1:] + ["500", "3"])[:2])
    srv = PrivateRedis(Path(tempfile.mkdtemp(prefix="floors-")))
    srv.start()
    port = srv.port
    procs = []
    try:
        r = redis.Redis(port=port)
        for k in KINDS:
            procs.append(subprocess.Popen([sys.executable, __file__, "consume", str(port), k]))
            r.blpop([f"floor:{k}:ready"], timeout=30)

        def trip(k: str) -> float:
            u = str(uuid.uuid4()).encode()
            sent = time.monotonic()
            r.xadd(f"floor:{k}", {"u": u})
            got = r.blpop([f"floor:{k}:reply:".encode() + u], timeout=5)
            assert got is not None, k
            return float(got[1]) - sent

        for k in KINDS:
            for _ in range(30):
                trip(k)
        for rnd in range(rounds):
            got: dict[str, list[float]] = {k: [] for k in KINDS}
            for _ in range(max(1, trips // 100)):
                for k in KINDS:
                    got[k] += [trip(k) for _ in range(100)]
            p50 = {k: sorted(v)[len(v) // 2] * 1e6 for k, v in got.items()}
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v:.0f} µs ({v / p50['sync']:.2f})" for k, v in p50.items()),
                  flush=True)
    finally:
        for p in procs:
            p.kill()
        srv.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["consume"]:
        consume(int(sys.argv[2]), sys.argv[3])
    else:
        main()
