"""Contract: enqueue, fetch, settle, priorities, waiting for results, result expiry, a foreign storage.

Leases, redelivery, dead letters, release and bad messages are in :mod:`.delivery`; both are part of
:class:`CoreContract`, the broker core every backend implements (no capability may be missing here).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid as _uuid
from typing import Any

import pytest

from qtasks_fast.testing.contract.delivery import DeliveryContract
from qtasks_fast.testing.contract.harness import Harness, envelope, failure, fetch, success, the_envelope, uuids

Q = "default"


class CoreContract(DeliveryContract):
    """The broker core every backend implements: the worker and the clients rely on all of it."""

    @pytest.mark.asyncio
    async def test_enqueue_fetch_settle_get(self, harness: Harness) -> None:
        """A task goes new -> process -> success; its record carries the result; an acked message never
        comes back, not even to a replacement consumer of the same name."""
        storage = harness.storage
        broker = await harness.consumer("alpha-0")
        e = envelope()
        await broker.enqueue([e], storage)
        new = await storage.get(e.uuid, [Q])
        assert new is not None and new.status == "new"
        ready, bad = await fetch(broker)
        assert bad == [] and uuids(ready) == [e.uuid]
        d = ready[0]
        assert (the_envelope(d).args, d.deliveries, d.prio) == ([1, 2], 1, 0)
        if not broker.marks_started(storage):  # what the worker does for a broker that does not mark it itself
            await storage.mark_started(ready, "alpha")
        running = await storage.get(e.uuid, [Q])
        # who runs it: the worker id (SQLite, memory) or its consumer name, "<worker id>-<slot>" (Redis)
        assert running is not None and running.status == "process" and running.worker_id in ("alpha", "alpha-0")
        await broker.settle([success(d, {"sum": [3]})], storage, [])
        done = await storage.get(e.uuid, [Q])
        assert done is not None and done.status == "success" and done.returning == {"sum": [3]}
        assert str(done.uuid) == e.uuid and done.args == (1, 2) and done.updated_at >= done.created_at
        assert await storage.get(e.uuid, ["other-queue"]) is None  # records are per queue
        assert await fetch(broker) == ([], [])
        assert await fetch(await harness.consumer("alpha-0")) == ([], [])
        assert (await harness.record(e.uuid)).worker_id == "alpha"

    @pytest.mark.asyncio
    async def test_priorities_then_fifo_and_count(self, harness: Harness) -> None:
        """Lower priority numbers first, first-in first-out within one, never more than ``count``, and only
        the queues the consumer serves."""
        broker = await harness.consumer()
        envs = [envelope(prio=p, args=(i,)) for i, p in enumerate([5, 0, 9, 0, 5, 1])]
        await broker.enqueue(envs, harness.storage)
        await broker.enqueue([envelope(queue="elsewhere")], harness.storage)  # a queue this worker does not serve
        first, _ = await fetch(broker, count=3)
        rest, _ = await fetch(broker, count=10)
        assert [(d.prio, the_envelope(d).args[0]) for d in first] == [(0, 1), (0, 3), (1, 5)]
        assert [(d.prio, the_envelope(d).args[0]) for d in rest] == [(5, 0), (5, 4), (9, 2)]

    @pytest.mark.asyncio
    async def test_sync_twins_work_without_a_running_loop(self, harness: Harness) -> None:
        """The sync client enqueues, reads and waits from a thread with no event loop."""
        storage, broker = harness.storage, harness.broker
        e = envelope()

        def producer() -> tuple[Any, Any, Any]:
            broker.enqueue_sync([e], storage, wait=True)
            return storage.get_sync(e.uuid, [Q]), storage.wait_sync(e.uuid, [Q], 0.05), storage.get_sync("nope", [Q])

        got, waited, missing = await asyncio.to_thread(producer)
        assert got.status == "new" and waited.status == "new" and missing is None
        ready, _ = await fetch(await harness.consumer())
        assert uuids(ready) == [e.uuid]

    @pytest.mark.asyncio
    async def test_blocking_fetch_wakes_on_enqueue_from_another_thread(self, harness: Harness) -> None:
        """An idle worker blocked in fetch gets a task a sync producer sends at once, not at its next poll."""
        broker = await harness.consumer()
        e = envelope()
        blocked = asyncio.create_task(fetch(broker, block=5.0))
        await asyncio.sleep(0.1)
        assert not blocked.done()
        t0 = time.monotonic()
        await asyncio.to_thread(broker.enqueue_sync, [e], harness.storage)
        ready, _ = await asyncio.wait_for(blocked, 1.0)
        assert time.monotonic() - t0 < 0.3 and uuids(ready) == [e.uuid]

    # ------------------------------------------------------------------------------------------- wait
    @pytest.mark.asyncio
    async def test_wait_blocks_until_settled(self, harness: Harness) -> None:
        """``wait`` returns as soon as the result is stored, not at its timeout or a poll."""
        storage = harness.storage
        broker = await harness.consumer()
        e = envelope()
        await broker.enqueue([e], storage, wait=True)
        waiter = asyncio.create_task(storage.wait(e.uuid, [Q], 5.0))
        (d,), _ = await fetch(broker)
        await asyncio.sleep(0.1)
        assert not waiter.done()
        t0 = time.monotonic()
        await broker.settle([success(d, 42)], storage, [])
        task = await asyncio.wait_for(waiter, 1.0)
        assert time.monotonic() - t0 < 0.3
        assert task is not None and task.status == "success" and task.returning == 42

    @pytest.mark.asyncio
    async def test_wait_follows_the_retry_chain(self, harness: Harness) -> None:
        """A failed attempt with a retry is not the answer: ``wait`` returns the retry's final record."""
        storage = harness.storage
        broker = await harness.consumer()
        parent = envelope("boom", retry=1)
        await broker.enqueue([parent], storage, wait=True)
        waiter = asyncio.create_task(storage.wait(parent.uuid, [Q], 5.0))
        (d,), _ = await fetch(broker)
        child = envelope("boom", retry=0, parent=parent.uuid)
        await broker.settle([failure(d, "Traceback: boom", child.uuid)], storage, [child])
        await asyncio.sleep(0.1)
        assert not waiter.done()
        failed = await harness.record(parent.uuid)
        assert failed.status == "error" and str(failed.retry_child_uuid) == child.uuid
        assert failed.traceback == "Traceback: boom"
        (d2,), _ = await fetch(broker)
        assert the_envelope(d2).uuid == child.uuid
        await broker.settle([success(d2, 7)], storage, [])
        task = await asyncio.wait_for(waiter, 1.0)
        assert task is not None and str(task.uuid) == child.uuid and task.status == "success" and task.returning == 7
        assert str(task.retry_parent_uuid) == parent.uuid

    @pytest.mark.asyncio
    async def test_wait_times_out_with_current_record_or_none(self, harness: Harness) -> None:
        storage = harness.storage
        e = envelope()
        await harness.broker.enqueue([e], storage)
        t0 = time.monotonic()
        task = await storage.wait(e.uuid, [Q], 0.2)
        assert 0.19 <= time.monotonic() - t0 < 0.6
        assert task is not None and task.status == "new"
        assert await storage.wait(str(_uuid.uuid4()), [Q], 0.2) is None

    @pytest.mark.asyncio
    async def test_wait_across_threads(self, harness: Harness) -> None:
        """A sync waiter in another thread wakes on this loop's settle, and this loop's waiter on a settle
        from another thread's loop."""
        storage = harness.storage
        broker = await harness.consumer()
        a, b = envelope(args=(1,)), envelope(args=(2,))
        await broker.enqueue([a, b], storage, wait=True)
        (da, db), _ = await fetch(broker)
        sync_waiter = asyncio.ensure_future(asyncio.to_thread(storage.wait_sync, a.uuid, [Q], 5.0))
        await asyncio.sleep(0.1)
        assert not sync_waiter.done()
        await broker.settle([success(da, "a")], storage, [])
        assert getattr(await asyncio.wait_for(sync_waiter, 1.0), "returning", None) == "a"
        waiter = asyncio.create_task(storage.wait(b.uuid, [Q], 5.0))
        await asyncio.sleep(0.05)
        thread = threading.Thread(target=lambda: asyncio.run(broker.settle([success(db, "b")], storage, [])))
        thread.start()
        try:
            assert getattr(await asyncio.wait_for(waiter, 1.0), "returning", None) == "b"
        finally:
            thread.join()

    @pytest.mark.asyncio
    async def test_results_expire_after_result_ttl(self, harness: Harness) -> None:
        """A finished record is gone ``result_ttl`` seconds after it finished: ``get`` and ``wait`` say
        unknown."""
        h = harness.configured(result_ttl=0.3)
        broker = await h.consumer()
        e = envelope()
        await broker.enqueue([e], h.storage)
        (d,), _ = await fetch(broker)
        await broker.settle([success(d, 1)], h.storage, [])
        assert (await h.record(e.uuid)).returning == 1
        deadline = time.monotonic() + 3.0  # a server may expire keys a little late (Redis: lazily + sampled)
        while await h.storage.get(e.uuid, [Q]) is not None:
            assert time.monotonic() < deadline, "the record outlived result_ttl by seconds"
            await asyncio.sleep(0.05)
        assert await h.storage.wait(e.uuid, [Q], 0.1) is None

    # ------------------------------------------------------------------------------- foreign storage
    @pytest.mark.asyncio
    async def test_foreign_storage_goes_through_the_storage_api(self, harness: Harness) -> None:
        """Paired with a storage it cannot write itself, the broker keeps it in step through the Storage API:
        new records, results, retries, and the ``error`` record of a dead-lettered message."""
        h = harness.configured(max_deliveries=1)
        foreign = h.foreign_storage()
        broker = await h.consumer(storage=foreign)
        assert not broker.marks_started(foreign)
        ok_env, retried, crashy = envelope(args=(1,)), envelope("boom", retry=1), envelope(args=(3,))
        await broker.enqueue([ok_env, retried, crashy], foreign, wait=True)
        assert (await h.record(ok_env.uuid, storage=foreign)).status == "new"
        ready, _ = await fetch(broker)
        await foreign.mark_started(ready, "w")
        assert (await h.record(crashy.uuid, storage=foreign)).status == "process"
        by_uuid = {the_envelope(d).uuid: d for d in ready}
        child = envelope("boom", parent=retried.uuid)
        await broker.settle([success(by_uuid[ok_env.uuid], "fine"), failure(by_uuid[retried.uuid], "tb", child.uuid)],
                            foreign, [child])
        (d_child,), _ = await fetch(broker)
        await broker.settle([success(d_child, "retried")], foreign, [])
        assert getattr(await foreign.wait(retried.uuid, [Q], 1.0), "returning", None) == "retried"
        assert (await h.record(ok_env.uuid, storage=foreign)).returning == "fine"
        # crashy's worker died; with max_deliveries=1 the replacement dead-letters it into the foreign storage
        assert await fetch(await h.consumer(storage=foreign)) == ([], [])
        task = await h.record(crashy.uuid, storage=foreign)
        assert task.status == "error" and str(task.traceback).startswith("dead-lettered")
