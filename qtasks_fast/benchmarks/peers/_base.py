"""Common base for the peer adapters (runs inside the peers venv, never in the product venv).

Every peer module defines a ``Bench`` subclass of :class:`PeerBench`. The harness
(:mod:`benchmarks.peers._harness`) drives it the same way for every library:

* ``worker_commands()``: argv lists for the library's recommended production
  worker with 2 processes; the harness starts them and kills their process trees.
* ``enqueue(task, arg)``: one task through the library's ordinary client API,
  returns a *handle* (the id needed to find the task's result).
* ``enqueue_many(n)``: ``n`` no-op tasks as fast as the library allows (its bulk
  API where it has one, else a loop / bounded ``gather``).
* ``probe(pipe, handle)`` + ``is_done(reply)``: the completion signal, identical in
  meaning for every peer: *the task's result is stored and visible in Redis*
  (each library's own result backend). The harness evaluates it with a plain
  synchronous redis-py client, so polling cost is the same for every peer.

Only the standard library and redis-py are imported here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

DEFAULT_REDIS = "redis://127.0.0.1:6379"
ENV_URL = "QTASKS_PEERS_REDIS_URL"
#: dbs the harness never flushes: 0 (the test suite) and 9 (the product benchmarks, qtasks_fast/benchmarks/common.py)
PROTECTED_DBS = frozenset({0, 9})


def redis_url(default_db: int) -> str:
    """The Redis URL (with db) this peer uses; the harness sets it in the environment."""
    return os.environ.get(ENV_URL, f"{DEFAULT_REDIS}/{default_db}")


def bindir() -> Path:
    """Directory of the interpreter's console scripts (the peers venv's ``bin``)."""
    import sys

    return Path(sys.executable).parent


def script(name: str) -> str:
    """Path of a console script installed next to the interpreter (falls back to the bare name)."""
    path = bindir() / name
    return str(path) if path.exists() else name


async def gather_chunked(coros: Sequence[Any], chunk: int = 100) -> list[Any]:
    """Await ``coros`` with at most ``chunk`` in flight, preserving order."""
    out: list[Any] = []
    for i in range(0, len(coros), chunk):
        out.extend(await asyncio.gather(*coros[i : i + chunk]))
    return out


class PeerBench:
    """One library under test. Subclasses override the hooks below."""

    #: short peer name (also the module name)
    name: ClassVar[str] = ""
    #: distribution name for ``importlib.metadata.version``
    dist: ClassVar[str] = ""
    #: the default Redis db of this peer (each peer has its own)
    db: ClassVar[int] = 15
    #: human description of the worker setup, recorded in the results
    worker_desc: ClassVar[str] = ""
    #: chunk size for pipelined bulk enqueue / concurrent gather
    chunk: ClassVar[int] = 100
    #: latency calls are spaced by a random idle gap, uniform in [0, latency_gap] seconds, so that
    #: arrivals are not phase-locked to a polling worker's cycle; set it >= the worker's poll interval
    latency_gap: ClassVar[float] = 0.02

    def __init__(self) -> None:
        self.url = redis_url(self.db)

    # -- lifecycle ---------------------------------------------------------
    def worker_commands(self) -> list[list[str]]:
        raise NotImplementedError

    async def open(self) -> None:
        """Create the producer-side client (called before each phase)."""

    async def close(self) -> None:
        """Close the producer-side client."""

    # -- producing -----------------------------------------------------------
    async def enqueue(self, task: str, arg: int = 0) -> Any:
        """Enqueue one ``noop`` (no argument) or ``echo`` (``arg``) task; return its handle."""
        raise NotImplementedError

    async def enqueue_many(self, n: int) -> list[Any]:
        """Enqueue ``n`` no-op tasks as fast as the library allows; return their handles."""
        return [await self.enqueue("noop") for _ in range(n)]

    # -- completion signal -----------------------------------------------------
    def probe(self, pipe: Any, handle: Any) -> None:
        """Queue on ``pipe`` (a redis-py pipeline) the read that shows ``handle``'s result."""
        raise NotImplementedError

    def is_done(self, reply: Any) -> bool:
        """Whether the reply of :meth:`probe` means the task reached a terminal state with its result stored."""
        return bool(reply)

    def is_ok(self, reply: Any) -> bool:
        """Whether a done task succeeded (checked once after each drain; failures are reported, not timed)."""
        return self.is_done(reply)

    def version(self) -> str:
        from importlib.metadata import version

        return version(self.dist or self.name)
