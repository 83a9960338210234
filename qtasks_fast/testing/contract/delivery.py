"""Contract: at-least-once hand-out. Leases and takeover, renew, release, delivery counting, dead letters
with reasons, last attempts handed out alone, and bad messages (part of :class:`.core.CoreContract`).

A consumer that stops without settling is a killed worker: its messages go to its replacement (a consumer
of the same name) at once, and to anyone else once the lease runs out without a renew.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

import pytest

from qtasks_fast import _corelib as core
from qtasks_fast.abc import DeadLetters, require
from qtasks_fast.abc.broker import Delivery
from qtasks_fast.testing.contract.harness import (
    ContractBase,
    Harness,
    envelope,
    fetch,
    fetch_until,
    success,
    the_envelope,
)

Q = "default"


def held(renewed: Collection[Delivery] | None) -> list[str]:
    """The message ids ``renew`` reports still held; None ("all", an old broker's answer) is not enough here:
    a worker would run a message another consumer took over."""
    assert renewed is not None, "renew must return the deliveries still held (None means all)"
    return [d.msg_id for d in renewed]


class DeliveryContract(ContractBase):
    """Leases, redelivery and dead-lettering: what makes a killed worker lose nothing and run nothing twice
    that it finished."""

    @pytest.mark.asyncio
    async def test_restarted_consumer_takes_over_its_own_messages_at_once(self, harness: Harness) -> None:
        crashed = await harness.consumer("w-0")
        e = envelope()
        await crashed.enqueue([e], harness.storage)
        (d1,), _ = await fetch(crashed)
        assert d1.deliveries == 1
        other = await harness.consumer("w-1")
        assert await fetch(other) == ([], [])  # lease (30 s) still running: nobody else may take it
        replacement = await harness.consumer("w-0")  # same slot name after a crash
        (d2,), _ = await fetch(replacement)
        assert (d2.msg_id, the_envelope(d2).uuid, d2.deliveries) == (d1.msg_id, e.uuid, 2)
        assert await fetch(replacement) == ([], [])  # only the first fetch after start takes over

    @pytest.mark.asyncio
    async def test_expired_lease_is_reclaimed_by_another_consumer(self, harness: Harness) -> None:
        """A renewed lease is kept past its length; an expired one goes to another consumer fetching as a worker
        does (1 s blocking reads) within a read or two, and the old owner learns from ``renew`` that it lost it."""
        h = harness.configured(lease_seconds=0.3)
        owner, thief = await h.consumer("owner-0"), await h.consumer("thief-0")
        e = envelope()
        await owner.enqueue([e], h.storage)
        (d,), _ = await fetch(owner)
        for _ in range(3):  # a live owner renews, and keeps it past the original lease
            await asyncio.sleep(0.15)
            assert held(await owner.renew([d])) == [d.msg_id]  # still held: renewed and reported
            assert await fetch(thief) == ([], [])
        t0 = time.monotonic()
        (taken,) = await fetch_until(thief, 5.0)  # owner stopped renewing: a worker's blocking fetches get it
        assert time.monotonic() - t0 < 2.0  # within the lease and one blocking read (1 s), not much later
        assert (taken.msg_id, taken.deliveries) == (d.msg_id, 2)
        assert held(await owner.renew([d])) == []  # the old owner learns it lost it, does not steal it back ...
        await owner.release([d])  # ... nor hands back what is no longer its
        assert await fetch(await h.consumer("other-0")) == ([], [])
        await thief.settle([success(taken, 1)], h.storage, [])
        assert (await h.record(e.uuid)).worker_id == "thief"

    @pytest.mark.asyncio
    async def test_a_live_consumer_never_takes_back_its_own_late_lease(self, harness: Harness) -> None:
        """A worker whose renewal comes late (its event loop slowed by a CPU-bound task's thread) is still alive:
        its own fetches must not hand it again, and charge a delivery for, a message it is still running; its late
        renewal keeps it. Only another consumer may take it once the lease has run out."""
        h = harness.configured(lease_seconds=0.3)
        owner = await h.consumer("slow-0")
        late = envelope(args=(1,))
        await owner.enqueue([late], h.storage)
        (d,), _ = await fetch(owner)
        await asyncio.sleep(0.45)  # past the lease, no renewal
        fresh = envelope(args=(2,))
        await owner.enqueue([fresh], h.storage)
        (got,), _ = await fetch(owner)  # the new message only, not the running one a second time
        assert the_envelope(got).uuid == fresh.uuid
        assert await fetch(owner) == ([], [])
        assert held(await owner.renew([d])) == [d.msg_id]  # the late renewal still holds it
        await owner.settle([success(got)], h.storage, [])
        await asyncio.sleep(0.45)  # the owner stops renewing (it died): another consumer takes it
        (taken,) = await fetch_until(await h.consumer("other-0"), 5.0)
        assert (taken.msg_id, taken.deliveries) == (d.msg_id, 2)

    @pytest.mark.asyncio
    async def test_renew_returns_only_what_is_still_held(self, harness: Harness) -> None:
        """Of a mixed batch, ``renew`` keeps and reports the deliveries still held, never one another consumer
        took over nor one already settled."""
        h = harness.configured(lease_seconds=0.3)
        owner, thief = await h.consumer("w-0"), await h.consumer("w-1")
        await owner.enqueue([envelope(args=(1,))], h.storage)
        (lost,), _ = await fetch(owner)
        await asyncio.sleep(0.4)
        (taken,), _ = await fetch(thief)  # lease ran out: lost is thief's now
        await owner.enqueue([envelope(args=(2,)), envelope(args=(3,))], h.storage)
        (kept, done), _ = await fetch(owner)
        await owner.settle([success(done)], h.storage, [])
        assert held(await owner.renew([lost, kept, done])) == [kept.msg_id]
        await asyncio.sleep(0.2)  # kept's lease was extended: the thief still cannot take it
        assert await fetch(thief) == ([], [])
        assert held(await thief.renew([taken])) == [taken.msg_id]

    @pytest.mark.asyncio
    async def test_release_hands_back_at_once_without_counting(self, harness: Harness) -> None:
        """A draining worker hands back what it did not run: another consumer gets it at once (no lease
        wait), with its delivery count unchanged."""
        draining = await harness.consumer("w-0")
        envs = [envelope(args=(i,)) for i in range(3)]
        await draining.enqueue(envs, harness.storage)
        (d0, d1), _ = await fetch(draining, count=2)
        other = await harness.consumer("w-1")
        ready, _ = await fetch(other, count=1, block=5.0)  # the third message is free
        assert [the_envelope(d).args[0] for d in ready] == [2]
        blocked = asyncio.create_task(fetch(other, count=10, block=5.0))
        await asyncio.sleep(0.05)
        assert not blocked.done()
        t0 = time.monotonic()
        await draining.release([d0])
        (again,), _ = await blocked
        assert time.monotonic() - t0 < 0.5  # a drain does not wait for the lease
        assert (the_envelope(again).uuid, again.deliveries) == (envs[0].uuid, 1)  # unrun: not counted
        await draining.release([d1])
        (first,), _ = await fetch(other)
        assert the_envelope(first).args[0] == 1
        assert await fetch(await harness.consumer("w-0")) == ([], [])  # released: not the old owner's any more

    @pytest.mark.asyncio
    async def test_max_deliveries_dead_letters_and_fails_the_record(self, harness: Harness) -> None:
        """A message that kills its worker every time is dead-lettered after ``max_deliveries`` hand-outs,
        with the reason in the dead letter and in the record (an ``error`` a waiting caller gets)."""
        h = harness.configured(max_deliveries=2)
        e = envelope()
        await h.broker.enqueue([e], h.storage)
        for n in (1, 2):
            (d,), _ = await fetch(await h.consumer())
            assert d.deliveries == n
        last = await h.consumer()
        assert await fetch(last) == ([], [])
        task = await h.storage.wait(e.uuid, [Q], 1.0)
        assert task is not None and task.status == "error"
        assert str(task.traceback).startswith("dead-lettered: delivered 2 times")
        with h.capability("dead-letter"):
            (dead,) = await require(last, DeadLetters).dead_letters(Q)
            assert dead.uuid == e.uuid and "delivered 2 times" in dead.reason and dead.body == core.encode(e)

    @pytest.mark.asyncio
    async def test_a_last_attempt_is_handed_out_alone(self, harness: Harness) -> None:
        """A message that kills its worker on every run, fetched in one batch with healthy ones: the healthy
        ones are charged deliveries by each crash, but each last attempt comes alone, so they all run and only
        the culprit is dead-lettered."""
        h = harness.configured(max_deliveries=3)
        poison, healthy = envelope("boom"), [envelope(args=(i, 0)) for i in range(4)]
        await h.broker.enqueue([poison, *healthy], h.storage)
        for n in (1, 2):  # the worker slot dies with the whole batch in flight, twice
            ready, _ = await fetch(await h.consumer())
            assert sorted(d.deliveries for d in ready) == [n] * 5
        worker = await h.consumer()
        done: list[str] = []
        for _ in range(5):
            ready, _ = await fetch(worker)
            assert len(ready) == 1 and ready[0].deliveries == 3, [the_envelope(d).task_name for d in ready]
            (d,) = ready
            if the_envelope(d).task_name == "boom":  # it kills the worker again: a replacement comes
                worker = await h.consumer()
                continue
            await worker.settle([success(d, 0)], h.storage, [])
            done.append(the_envelope(d).uuid)
        assert sorted(done) == sorted(e.uuid for e in healthy)
        assert await fetch(await h.consumer()) == ([], [])
        assert (await h.record(poison.uuid)).status == "error"
        with h.capability("dead-letter"):
            (dead,) = await require(worker, DeadLetters).dead_letters(Q)
            assert dead.uuid == poison.uuid and "delivered 3 times" in dead.reason

    @pytest.mark.asyncio
    async def test_a_last_attempt_passed_over_in_a_takeover_comes_next_without_waiting_for_a_lease(
            self, harness: Harness) -> None:
        h = harness.configured(max_deliveries=3)
        b = envelope(prio=1)
        await h.broker.enqueue([b], h.storage)
        await fetch(await h.consumer())  # b: 1 delivery; crash
        a = envelope(prio=0)
        await h.broker.enqueue([a], h.storage)
        ready, _ = await fetch(await h.consumer())  # b: 2, a: 1; crash
        assert sorted((the_envelope(d).uuid, d.deliveries) for d in ready) == sorted([(b.uuid, 2), (a.uuid, 1)])
        worker = await h.consumer()  # lease 30 s: nothing expires here
        ((first,), _) = await fetch(worker)
        assert (the_envelope(first).uuid, first.deliveries) == (a.uuid, 2)  # b's last attempt is not fetched with it
        await worker.settle([success(first, 0)], h.storage, [])
        ((last,), _) = await fetch(worker)
        assert (the_envelope(last).uuid, last.deliveries) == (b.uuid, 3)  # alone, at once

    @pytest.mark.asyncio
    async def test_dead_letter_ends_the_record_with_the_reason(self, harness: Harness) -> None:
        """What the worker dead-letters (a bad envelope it decoded) ends ``error`` with the reason, wakes a
        waiting caller, and is never handed out again."""
        broker = await harness.consumer()
        e = envelope()
        await broker.enqueue([e], harness.storage, wait=True)
        waiter = asyncio.create_task(harness.storage.wait(e.uuid, [Q], 5.0))
        (d,), _ = await fetch(broker)
        await broker.dead_letter([(d, "queue 'x' is not the queue it was read from")], harness.storage)
        task = await asyncio.wait_for(waiter, 1.0)
        assert task is not None and task.status == "error"
        assert "queue 'x' is not the queue it was read from" in str(task.traceback)
        assert await fetch(await harness.consumer()) == ([], [])

    @pytest.mark.asyncio
    async def test_malformed_and_unknown_messages_are_dead_lettered(self, harness: Harness) -> None:
        """Bytes that are no envelope and a call of a task nobody has are dead-lettered with their reasons
        (the unknown task's record says so too), never handed out again."""
        broker = await harness.consumer()
        harness.inject_raw(b"\xc1 not msgpack")
        unknown = envelope("no_such_task")
        await broker.enqueue([unknown], harness.storage)
        ready, bad = await fetch(broker)
        assert ready == [] and len(bad) == 2
        await broker.dead_letter(bad, harness.storage)
        task = await harness.record(unknown.uuid)
        assert task.status == "error" and "unknown task" in str(task.traceback)
        assert await fetch(await harness.consumer()) == ([], [])  # gone, even for a takeover
        with harness.capability("dead-letter"):
            letters = await require(broker, DeadLetters).dead_letters(Q)
            assert sorted(x.reason.split(":")[0] for x in letters) == ["malformed message",
                                                                        "unknown task 'no_such_task'"]
