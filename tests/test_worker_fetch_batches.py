"""A busy worker whose tasks await I/O fetches in batches, not once per finished task (issue 16).

Tasks that await I/O finish one at a time; each frees one slot. Fetching at every finish cost one round trip
(and one read on the broker) per task or two. While the prefetched backlog can refill the free slots, the
fetcher now waits until a quarter of ``concurrency + prefetch`` is free; an idle worker still fetches at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.testing import WorkerThread
from qtasks_fast.worker.fetcher import topping_up


def test_a_fetch_waits_only_while_every_slot_is_busy_and_the_backlog_can_refill_the_free_ones() -> None:
    busy = SimpleNamespace(active=10, concurrency=10, backlog=deque(range(5)))
    assert topping_up(busy, 3)  # the backlog refills 3 free slots: the read can wait for more
    assert not topping_up(busy, 6)  # it cannot refill 6: fetch now
    idle = SimpleNamespace(active=3, concurrency=10, backlog=deque(range(5)))
    assert not topping_up(idle, 1)  # a free slot and nothing running there: fetch now
    empty = SimpleNamespace(active=10, concurrency=10, backlog=deque())
    assert not topping_up(empty, 1)


def test_tasks_that_await_io_are_fetched_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    fetched: list[int] = []
    fetch = InMemoryBroker.fetch

    async def counting(self: InMemoryBroker, count: int, block: float) -> Any:
        out = await fetch(self, count, block)
        n = sum(len(flat) // 4 for _, flat in out)
        if n:
            fetched.append(n)
        return out

    monkeypatch.setattr(InMemoryBroker, "fetch", counting)
    app = QueueTasks(f"batches{time.monotonic_ns()}", broker_url="memory://")

    @app.task(name="io")
    async def io(i: int) -> int:
        await asyncio.sleep(0.001 * (i % 3))  # finishes one at a time, as a task awaiting a command does
        return i

    n = 300
    with WorkerThread(app, concurrency=16) as worker:
        tasks = app.add_tasks([("io", (i,), {}) for i in range(n)])
        for t in tasks[-5:]:
            done = app.wait(t.uuid, 30)
            assert done is not None and done.status == "success"
        deadline = time.monotonic() + 30
        while sum(fetched) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker._error is None
    assert sum(fetched) == n
    # one fetch per task or two before; now about one per quarter of concurrency + prefetch (8)
    assert len(fetched) <= n // 5, fetched
