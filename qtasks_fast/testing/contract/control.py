"""Contract: the optional capabilities (delays, unique keys, cancel, purge, dead letters, limits, claims,
worker registry, queue statistics, published task table, flush_all): each works, or raises ``NotSupported``
naming backend and capability (``harness.capability``).

Delays, unique keys, cancel, purge and dead-letter management are here; the fleet-wide ones (limits,
claims, worker registry, queue statistics, the published task table, flush_all) in :mod:`.fleet`.
"""

from __future__ import annotations

import asyncio
import time
import uuid as _uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from qtasks_fast.abc import Cancel, DeadLetters, Purge, require
from qtasks_fast.abc.broker import Broker, DeadLetter
from qtasks_fast.abc.storage import Storage
from qtasks_fast.schemas import META_UNIQUE, Envelope
from qtasks_fast.testing.contract.fleet import FleetContract
from qtasks_fast.testing.contract.harness import (
    Harness,
    envelope,
    failure,
    fetch,
    fetch_until,
    success,
    the_envelope,
    uuids,
)

Q = "default"


async def fetched(broker: Broker) -> list[Any]:
    """What one non-blocking fetch hands out (no bad messages expected)."""
    ready, bad = await fetch(broker)
    assert bad == [], bad
    return ready


async def sent(broker: Broker, storage: Storage, e: Envelope) -> bool:
    """Enqueue ``e``; False when its unique key was held (skipped)."""
    return not await broker.enqueue([e], storage)


async def _drain(it: AsyncIterator[Any]) -> None:
    async for _ in it:
        pass


class ControlContract(FleetContract):
    """Optional capabilities: what ``app.add_task(countdown=..., unique=...)``, ``app.cancel``, ``purge`` and
    ``qtasks-fast dlq`` rely on."""

    # ------------------------------------------------------------------------------------------- delays
    @pytest.mark.asyncio
    async def test_delayed_envelope_is_held_until_its_eta(self, harness: Harness) -> None:
        """An idle worker already blocked in its read gets a delayed task at its eta, not before and not
        long after; an eta already passed is delivered at once."""
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        with harness.capability("delay", "eta"):
            blocked = asyncio.create_task(fetch_until(worker, 5.0))
            try:
                await asyncio.sleep(0.1)
                later = envelope(eta=time.time() + 0.6)
                assert not await broker.enqueue([later], storage)
                assert (await harness.record(later.uuid)).status == "new"
                got = await blocked
            finally:
                blocked.cancel()  # a no-op once done; ends the read when the enqueue was refused
            assert uuids(got) == [later.uuid]
            assert later.eta - 0.05 <= time.time() < later.eta + 0.8
            assert got[0].deliveries == 1
            past = envelope(eta=time.time() - 5)
            await broker.enqueue([past], storage)
            assert uuids(await fetched(worker)) == [past.uuid]

    @pytest.mark.asyncio
    async def test_retry_with_backoff_is_held_like_a_delayed_envelope(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        parent = envelope()
        await broker.enqueue([parent], storage)
        (d,) = await fetched(worker)
        child = envelope(eta=time.time() + 0.5, parent=parent.uuid)
        with harness.capability("delay", "eta"):
            await worker.settle([failure(d, "boom", child.uuid)], storage, [child])
            assert (await harness.record(child.uuid)).status == "new"
            assert await fetched(worker) == []  # backing off
            got = await fetch_until(worker, 3.0)
            assert uuids(got) == [child.uuid] and time.time() >= child.eta - 0.05

    # -------------------------------------------------------------------------------------- unique keys
    @pytest.mark.asyncio
    async def test_unique_enqueue_skips_and_names_the_holder(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        first, dup = envelope(unique="report:1"), envelope(unique="report:1")
        with harness.capability("unique"):
            assert not await broker.enqueue([first], storage)
            assert await broker.enqueue([dup], storage) == {dup.uuid: first.uuid}
            other = envelope(unique="report:2")
            a, b = envelope(unique="batch"), envelope(unique="batch")  # a duplicate within one batch
            plain = envelope()
            skipped = await asyncio.to_thread(broker.enqueue_sync, [other, a, b, plain], storage)
            assert skipped == {b.uuid: a.uuid}
            assert await storage.get(dup.uuid, [Q]) is None and await storage.get(b.uuid, [Q]) is None
            worker = await harness.consumer()
            assert sorted(uuids(await fetched(worker))) == sorted([first.uuid, other.uuid, a.uuid, plain.uuid])

    @pytest.mark.asyncio
    async def test_unique_key_is_given_back_when_its_task_is_cancelled_purged_or_dead(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        queued, delayed = envelope(unique="q"), envelope(unique="d", eta=time.time() + 30)
        purged, dead = envelope(unique="p"), envelope(unique="x")
        with harness.capability("unique", "delay", "cancel", "purge"):
            cancel, purge = require(broker, Cancel).cancel, require(broker, Purge).purge
            for e in (queued, delayed, purged):
                assert await sent(broker, storage, e)
            assert await cancel(queued.uuid, Q, "no", storage) == "queued"
            assert await cancel(delayed.uuid, Q, "no", storage) == "queued"
            assert await purge(Q) == 1
            assert await sent(broker, storage, dead)
            (d,) = await fetched(worker)
            await worker.dead_letter([(d, "bad")], storage)
            # each key is free again: the same call can be sent anew, and its new record is the one that runs
            for key in ("q", "d", "p", "x"):
                again = envelope(unique=key)
                assert await sent(broker, storage, again), key
                assert (await harness.record(again.uuid)).status == "new"

    @pytest.mark.asyncio
    async def test_unique_key_is_given_back_by_a_final_failure_or_cancel_not_a_success_or_retry(
            self, harness: Harness) -> None:
        from qtasks_fast.middlewares.retries import retry_child

        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        good, bad, stopped, flaky = (envelope(unique="ok"), envelope(unique="bad"), envelope(unique="stop"),
                                     envelope(unique="flaky", retry=1))
        with harness.capability("unique"):
            for e in (good, bad, stopped, flaky):
                assert await sent(broker, storage, e)
            by_uuid = {the_envelope(d).uuid: d for d in await fetched(worker)}
            child = retry_child(flaky, None, RuntimeError("once"))
            assert child is not None
            await worker.settle([success(by_uuid[good.uuid]), failure(by_uuid[bad.uuid], "boom"),
                                 failure(by_uuid[stopped.uuid], "stop", status="cancel"),
                                 failure(by_uuid[flaky.uuid], "once", child.uuid)], storage, [child])
            assert not await sent(broker, storage, envelope(unique="ok"))  # a success keeps its key for the ttl
            assert not await sent(broker, storage, envelope(unique="flaky"))  # a retry follows: still held
            assert await sent(broker, storage, envelope(unique="bad"))
            assert await sent(broker, storage, envelope(unique="stop"))
            got = {the_envelope(d).uuid: d for d in await fetched(worker)}  # the child and the two sent again
            d = got.pop(child.uuid)
            await worker.settle([failure(d, "twice"), *(success(x) for x in got.values())], storage, [])
            assert await sent(broker, storage, envelope(unique="flaky"))  # the last retry failed: the key goes back

    @pytest.mark.asyncio
    async def test_unique_key_claimed_again_is_not_given_back_by_its_old_holder(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        old = envelope(meta={META_UNIQUE: ["k", 0.3]})
        with harness.capability("unique", "cancel"):
            cancel = require(broker, Cancel).cancel
            assert await sent(broker, storage, old)
            (d,) = await fetched(worker)
            await asyncio.sleep(0.4)  # the key expires while old runs, and a new call claims it
            new = envelope(unique="k")
            assert await sent(broker, storage, new)
            await worker.settle([failure(d, "boom")], storage, [])
            assert await broker.enqueue([envelope(unique="k")], storage) not in (None, {})  # still held by new
            assert await cancel(new.uuid, Q, "no", storage) == "queued"
            assert await sent(broker, storage, envelope(unique="k"))

    # ------------------------------------------------------------------------------------------- cancel
    @pytest.mark.asyncio
    async def test_cancel_of_a_queued_task_ends_it_unrun(self, harness: Harness) -> None:
        """``queued``: the record says cancel with the reason (a waiting caller wakes), it is never handed out;
        a second cancel says ``finished``, an unknown uuid ``unknown``."""
        broker, storage = harness.broker, harness.storage
        e, keep = envelope(), envelope()
        await broker.enqueue([e, keep], storage, wait=True)
        waiter = asyncio.create_task(storage.wait(e.uuid, [Q], 5.0))
        await asyncio.sleep(0.1)
        assert not waiter.done()
        with harness.capability("cancel"):
            cancel = require(broker, Cancel).cancel
            try:
                assert await cancel(e.uuid, Q, "not needed", storage) == "queued"
                task = await asyncio.wait_for(waiter, 2.0)
            finally:
                waiter.cancel()
            assert task is not None and task.status == "cancel" and task.traceback == "not needed"
            worker = await harness.consumer()
            assert uuids(await fetched(worker)) == [keep.uuid]  # the cancelled one is never handed out
            assert await fetched(await harness.consumer("w-1")) == []
            assert await cancel(e.uuid, Q, "again", storage) == "finished"
            assert (await harness.record(e.uuid)).traceback == "not needed"
            assert await cancel(str(_uuid.uuid4()), Q, "?", storage) == "unknown"

    @pytest.mark.asyncio
    async def test_cancel_of_a_delayed_task(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        later = envelope(eta=time.time() + 0.4)
        with harness.capability("delay", "eta", "cancel"):
            cancel = require(broker, Cancel).cancel
            await broker.enqueue([later], storage)
            assert await cancel(later.uuid, Q, "changed my mind", storage) == "queued"
            task = await harness.record(later.uuid)
            assert task.status == "cancel" and task.traceback == "changed my mind"
            worker = await harness.consumer()
            assert await fetch_until(worker, 1.0) == []  # its eta passed: still never delivered

    @pytest.mark.asyncio
    async def test_cancel_of_a_fetched_task_is_sent_to_the_workers(self, harness: Harness) -> None:
        """``running``: the workers hear ``(uuid, reason)`` through ``cancel_requests``, whose iterator ends
        when its broker closes; once settled the task is ``finished``."""
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        e = envelope()
        await broker.enqueue([e], storage)
        (d,) = await fetched(worker)
        with harness.capability("cancel"):
            cancel = require(broker, Cancel).cancel
            requests = require(worker, Cancel).cancel_requests()
            heard = asyncio.ensure_future(requests.__anext__())
            try:
                deadline = time.monotonic() + 5
                while not heard.done():  # the listener subscribes in the background: ask until it hears one
                    assert time.monotonic() < deadline, "no cancel request arrived"
                    assert await cancel(e.uuid, Q, "stop it", storage) == "running"
                    await asyncio.wait({heard}, timeout=0.2)
            finally:
                heard.cancel()
            assert heard.result() == (e.uuid, "stop it")
            await worker.settle([failure(d, "stop it", status="cancel")], storage, [])
            task = await harness.record(e.uuid)
            assert task.status == "cancel" and task.traceback == "stop it"
            assert await cancel(e.uuid, Q, "late", storage) == "finished"
            rest = asyncio.ensure_future(_drain(requests))
            await worker.close()
            await asyncio.wait_for(rest, 3.0)  # the listener ends with its broker

    # ------------------------------------------------------------------------------------- dead letters
    @pytest.mark.asyncio
    async def test_dead_letters_list_requeue_and_purge(self, harness: Harness) -> None:
        """Newest first with reason, time and the call; a requeue runs the same uuid again with a fresh count
        and a ``new`` record; purge by id or all."""
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        envs = [envelope(args=(i,)) for i in range(3)]
        await broker.enqueue(envs, storage)
        ds = await fetched(worker)
        await worker.dead_letter([(d, f"reason {the_envelope(d).args[0]}") for d in ds], storage)
        assert (await harness.record(envs[0].uuid)).status == "error"
        with harness.capability("dead-letter", "dead letter"):
            dlq = require(broker, DeadLetters)
            letters = await dlq.dead_letters(Q)
            assert all(isinstance(x, DeadLetter) for x in letters)
            assert [x.uuid for x in letters] == [e.uuid for e in reversed(envs)]  # newest first
            x0 = letters[-1]
            assert (x0.queue, x0.reason, x0.task_name) == (Q, "reason 0", "add") and x0.at <= time.time()
            assert msgspec.msgpack.decode(x0.body, type=Envelope).uuid == envs[0].uuid

            assert await dlq.requeue_dead(Q, [x0.id]) == 1
            assert (await harness.record(envs[0].uuid)).status == "new"
            (again,) = await fetched(worker)
            assert the_envelope(again).uuid == envs[0].uuid and again.deliveries == 1  # a fresh delivery count
            await worker.settle([success(again, "ran")], storage, [])
            assert (await harness.record(envs[0].uuid)).returning == "ran"

            assert await dlq.purge_dead(Q, [letters[0].id]) == 1
            assert [x.uuid for x in await dlq.dead_letters(Q)] == [envs[1].uuid]
            assert await dlq.requeue_dead(Q) == 1
            (d1,) = await fetched(worker)
            assert the_envelope(d1).uuid == envs[1].uuid and await dlq.dead_letters(Q) == []
            await worker.dead_letter([(d1, "again")], storage)
            assert [x.reason for x in await dlq.dead_letters(Q)] == ["again"]
            assert await dlq.purge_dead(Q) == 1 and await dlq.dead_letters(Q) == []

    # -------------------------------------------------------------------------------------------- purge
    @pytest.mark.asyncio
    async def test_purge_drops_queued_and_delayed_but_not_running(self, harness: Harness) -> None:
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        running = envelope()
        await broker.enqueue([running], storage)
        (d,) = await fetched(worker)
        queued, delayed = [envelope(), envelope()], envelope(eta=time.time() + 0.3)
        with harness.capability("purge", "delay", "eta"):
            purge = require(broker, Purge).purge
            await broker.enqueue([*queued, delayed], storage)
            assert await purge(Q) == 3
            for e in (*queued, delayed):
                assert (await harness.record(e.uuid)).status == "cancel"
            assert (await harness.record(running.uuid)).status == "process"
            assert await fetch_until(worker, 0.8) == []
            await worker.settle([success(d, 1)], storage, [])
            assert (await harness.record(running.uuid)).status == "success"
            assert await purge(Q) == 0

    @pytest.mark.asyncio
    async def test_purge_leaves_tasks_that_finished_while_an_older_one_runs(self, harness: Harness) -> None:
        """A backend that keeps finished entries while an older one is pending (Redis trims its stream later)
        must not take them for queued tasks and cancel their records."""
        broker, storage = harness.broker, harness.storage
        slow_worker, fast_worker = await harness.consumer("w-0"), await harness.consumer("w-1")
        first, second, queued = envelope(), envelope(), envelope()
        await broker.enqueue([first], storage)
        (slow,) = await fetched(slow_worker)
        await broker.enqueue([second], storage)
        (fast,) = await fetched(fast_worker)
        await fast_worker.settle([success(fast, 2)], storage, [])
        await broker.enqueue([queued], storage)
        with harness.capability("purge"):
            purge = require(broker, Purge).purge
            assert await purge(Q) == 1
            assert (await harness.record(second.uuid)).status == "success"
            assert (await harness.record(queued.uuid)).status == "cancel"
        await slow_worker.settle([success(slow, 1)], storage, [])
        assert (await harness.record(first.uuid)).status == "success"

    # ---------------------------------------------------------------------------------- foreign storage
    @pytest.mark.asyncio
    async def test_control_keeps_a_foreign_storage_in_step(self, harness: Harness) -> None:
        """A storage the broker cannot write itself gets its records through the Storage API: unique skips
        create none, cancel/dead-letter/requeue/purge set the statuses."""
        foreign = harness.foreign_storage()
        worker = await harness.consumer(storage=foreign)
        first, dup = envelope(unique="k"), envelope(unique="k")
        # ``later`` must stay delayed through the steps below (a loaded machine takes over a second for them)
        # and come due before the last check, so that check shows the purge really took it
        due = time.time() + 2.0
        later, queued, dead = envelope(eta=due), envelope(), envelope()
        with harness.capability("unique", "delay", "eta", "cancel", "dead-letter", "dead letter", "purge"):
            cancel, purge = require(worker, Cancel).cancel, require(worker, Purge).purge
            requeue_dead = require(worker, DeadLetters).requeue_dead
            assert await worker.enqueue([first], foreign) in (None, {})
            assert await worker.enqueue([dup, later], foreign) == {dup.uuid: first.uuid}
            assert await foreign.get(dup.uuid, [Q]) is None
            assert (await harness.record(later.uuid, storage=foreign)).status == "new"
            (d,) = await fetched(worker)
            await worker.settle([success(d, 1)], foreign, [])
            assert await cancel(first.uuid, Q, "late", foreign) == "finished"
            await worker.enqueue([queued], foreign)
            assert await cancel(queued.uuid, Q, "no", foreign) == "queued"
            assert (await harness.record(queued.uuid, storage=foreign)).status == "cancel"
            await worker.enqueue([dead], foreign)
            (d,) = await fetched(worker)
            await worker.dead_letter([(d, "bad")], foreign)
            assert (await harness.record(dead.uuid, storage=foreign)).status == "error"
            assert await requeue_dead(Q) == 1
            assert (await harness.record(dead.uuid, storage=foreign)).status == "new"
            assert await purge(Q) == 2  # the requeued one and the delayed one
            for e in (dead, later):
                assert (await harness.record(e.uuid, storage=foreign)).status == "cancel"
            assert await fetch_until(worker, max(0.6, due - time.time() + 0.5)) == []
