"""Contract: the fleet-wide capabilities. Concurrency limits (slots), claims (leader election of periodic
ticks), the worker registry, queue statistics, the published task table and ``flush_all`` (part of
:class:`.control.ControlContract`)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from qtasks_fast.abc import (
    AuditEntry,
    AuditLog,
    Claims,
    DeadLetters,
    FlushAll,
    Limits,
    QueueStatistics,
    QueueStats,
    TaskTable,
    WorkerInfo,
    WorkerRegistry,
    require,
)
from qtasks_fast.tasktable import TaskSpec
from qtasks_fast.testing.contract.harness import ContractBase, Harness, envelope, fetch, success, uuids

Q = "default"


def worker_info(name: str, heartbeat: float, pid: int | None = None) -> WorkerInfo:
    """A worker process' registry entry, beating at ``heartbeat`` (wall clock)."""
    return WorkerInfo(id=name, host="contract-host", pid=pid or os.getpid(), processes=1, queues=[Q], concurrency=4,
                      started=heartbeat, heartbeat=heartbeat)


class FleetContract(ContractBase):
    """What ``@app.task(concurrency_limit=...)``, periodic tasks, ``qtasks-fast inspect``, calls by name and
    ``app.flush_all()`` rely on."""

    @pytest.mark.asyncio
    async def test_acquire_limits_slots_until_released_or_expired(self, harness: Harness) -> None:
        """``limit`` holders at most; renewing a held slot is no new one; release frees one; a slot not renewed
        within its ttl is freed (its holder is presumed dead); ``slot_holders`` names who holds them."""
        broker = await harness.consumer()
        key = "task:add"
        with harness.capability("limit"):
            limits = require(broker, Limits)
            assert await limits.acquire(key, Q, 2, "t1", 30)
            assert await limits.acquire(key, Q, 2, "t2", 30)
            assert not await limits.acquire(key, Q, 2, "t3", 30)
            assert sorted(await limits.slot_holders(key, Q)) == ["t1", "t2"]
            assert await limits.acquire(key, Q, 2, "t1", 30)  # renewing a held slot
            await limits.release_slot(key, Q, "t1")
            assert await limits.acquire(key, Q, 2, "t3", 30)
            assert not await limits.acquire(key, Q, 2, "t4", 30)
            assert sorted(await limits.slot_holders(key, Q)) == ["t2", "t3"]
            assert await limits.slot_holders("task:other", Q) == []
            assert await limits.acquire(key, "other-queue", 1, "t4", 30)  # slots are per queue
            assert await limits.acquire("task:short", Q, 1, "a", 0.3)
            assert not await limits.acquire("task:short", Q, 1, "b", 0.3)
            await asyncio.sleep(0.4)  # "a" was not renewed within its ttl: its holder is presumed dead
            assert await limits.acquire("task:short", Q, 1, "b", 0.3)

    @pytest.mark.asyncio
    async def test_claim_is_granted_once_per_ttl(self, harness: Harness) -> None:
        broker = harness.broker
        with harness.capability("claim"):
            claim, other = require(broker, Claims).claim, require(await harness.consumer("w-1"), Claims).claim
            assert await claim("tick:1", 0.3)
            assert not await claim("tick:1", 0.3)
            assert not await other("tick:1", 0.3)  # fleet-wide: any consumer
            assert await claim("tick:2", 0.3)
            await asyncio.sleep(0.4)
            assert await claim("tick:1", 0.3)

    @pytest.mark.asyncio
    async def test_worker_registry_lists_live_workers(self, harness: Harness) -> None:
        """A registered worker is listed while its heartbeat is younger than a lease; a beat refreshes its
        entry (no second one); a graceful stop removes it; a silent one drops out of the live list."""
        broker = harness.broker
        now = time.time()
        alive, silent = worker_info("alive-0", now), worker_info("silent-0", now - broker.lease_seconds - 1, pid=1)
        with harness.capability("registry"):
            registry = require(broker, WorkerRegistry)
            assert await registry.workers() == []
            await registry.register_worker(alive)
            await registry.register_worker(silent)
            (listed,) = await registry.workers()
            assert (listed.id, listed.host, listed.pid, listed.queues, listed.concurrency) == (
                "alive-0", "contract-host", os.getpid(), [Q], 4)
            beat = worker_info("alive-0", now + 1)
            await require(await harness.consumer("w-1"), WorkerRegistry).register_worker(beat)  # any consumer's
            assert [w.heartbeat for w in await registry.workers()] == [beat.heartbeat]
            await registry.unregister_worker(alive)
            assert await registry.workers() == []
            await registry.unregister_worker(alive)  # removing one that is not there is no error

    @pytest.mark.asyncio
    async def test_queue_stats_count_a_known_state(self, harness: Harness) -> None:
        """Waiting, in flight, delayed and dead now; a finished message is in none of them."""
        broker, storage = harness.broker, harness.storage
        worker = await harness.consumer()
        running, done, dead = envelope(args=(1,)), envelope(args=(2,)), envelope(args=(3,))
        await broker.enqueue([running, done, dead], storage)
        by_uuid = {d.envelope.uuid: d for d in (await fetch(worker))[0] if d.envelope}
        await worker.settle([success(by_uuid[done.uuid])], storage, [])
        await worker.dead_letter([(by_uuid[dead.uuid], "bad")], storage)
        with harness.capability("queue statistics", "stat", "delay", "eta"):
            await broker.enqueue([envelope(), envelope(prio=5), envelope(eta=time.time() + 30)], storage)
            stats = require(broker, QueueStatistics).queue_stats
            assert await stats(Q) == QueueStats(waiting=2, in_flight=1, delayed=1, dead=1)
            assert await stats("other-queue") == QueueStats(waiting=0, in_flight=0, delayed=0, dead=0)

    @pytest.mark.asyncio
    async def test_published_task_table_keeps_the_newest_version_per_task(self, harness: Harness) -> None:
        """Empty until a worker publishes; a publish merges by name (a name is never dropped) and an older
        version does not overwrite a newer one's entry, which it reports as kept."""
        broker = harness.broker
        with harness.capability("task table"):
            table = require(broker, TaskTable)
            assert await table.published_tasks() == {}
            v1 = {"add": TaskSpec(queue=Q, retry=1, version="1.10"), "report": TaskSpec(queue="io", version="1.10")}
            assert await table.publish_tasks(v1) == []
            consumer = require(await harness.consumer("w-1"), TaskTable)
            assert await consumer.published_tasks() == v1  # the app's, not one consumer's
            assert await table.publish_tasks({"add": TaskSpec(queue="old", version="1.9")}) == ["add"]
            newer = TaskSpec(queue="fast", retry=3, version="2.0")
            assert await table.publish_tasks({"add": newer}) == []
            assert await table.published_tasks() == {"add": newer, "report": v1["report"]}

    @pytest.mark.asyncio
    async def test_audit_log_is_app_wide_newest_first(self, harness: Harness) -> None:
        """An entry written through one connection is read through another (the fleet's dashboards agree),
        newest first with distinct ids, at most ``limit``; another app's log is its own."""
        other = harness.configured(app_name=harness.app_name + ":b")
        with harness.capability("audit"):
            log, reader = require(harness.broker, AuditLog), require(await harness.consumer("w-1"), AuditLog)
            ids = [await log.audit(AuditEntry(at=1000.0 + i, who="api", action="cancel", target=f"t{i}",
                                              outcome="queued")) for i in range(3)]
            assert len(set(ids)) == 3
            got = await reader.audit_entries(10)
            assert [(e.target, e.who, e.action, e.outcome, e.at) for e in got] == [
                (f"t{i}", "api", "cancel", "queued", 1000.0 + i) for i in (2, 1, 0)]
            assert [e.id for e in got] == ids[::-1]
            assert [e.target for e in await reader.audit_entries(2)] == ["t2", "t1"]
            assert await require(other.broker, AuditLog).audit_entries(10) == []

    @pytest.mark.asyncio
    async def test_flush_all_deletes_this_app_only(self, harness: Harness) -> None:
        """Messages (queued, delayed, in flight), records, dead letters, unique keys, slots, claims and the
        published table of this app go; the worker registry stays; an app named like it keeps everything."""
        broker, storage = harness.broker, harness.storage
        other = harness.configured(app_name=harness.app_name + ":b")
        theirs = envelope()
        worker = await harness.consumer()
        with harness.capability("flush", "unique", "delay", "eta", "limit", "claim", "task table", "registry",
                                "dead-letter"):
            mine = (require(broker, FlushAll), require(broker, Limits), require(broker, Claims),
                    require(broker, TaskTable), require(broker, WorkerRegistry), require(broker, DeadLetters))
            flush, limits, claims, table, registry, dlq = mine
            theirs_table = require(other.broker, TaskTable)
            await other.broker.enqueue([theirs], other.storage)
            await theirs_table.publish_tasks({"add": TaskSpec(queue=Q)})
            finished, running, dead = envelope(), envelope(), envelope()
            await broker.enqueue([finished, running, dead], storage)
            by_uuid = {d.envelope.uuid: d for d in (await fetch(worker))[0] if d.envelope}
            await worker.settle([success(by_uuid[finished.uuid])], storage, [])
            await worker.dead_letter([(by_uuid[dead.uuid], "bad")], storage)
            queued, delayed = envelope(unique="k"), envelope(eta=time.time() + 0.3)
            await broker.enqueue([queued, delayed], storage)
            assert await limits.acquire("task:add", Q, 1, "t1", 30) and await claims.claim("tick", 30)
            await table.publish_tasks({"add": TaskSpec(queue=Q)})
            await registry.register_worker(worker_info("alive-0", time.time()))

            await flush.flush_all([Q])
            for e in (finished, running, dead, queued, delayed):
                assert await storage.get(e.uuid, [Q]) is None, e
            await asyncio.sleep(0.4)  # the delayed one would be due now
            assert await fetch(await harness.consumer("fresh-0")) == ([], [])
            assert await dlq.dead_letters(Q) == []
            assert not await broker.enqueue([envelope(unique="k")], storage)  # the key is free
            assert await limits.acquire("task:add", Q, 1, "t2", 30) and await claims.claim("tick", 30)
            assert await table.published_tasks() == {}
            assert [w.id for w in await registry.workers()] == ["alive-0"]

            assert (await other.record(theirs.uuid)).status == "new"
            assert list(await theirs_table.published_tasks()) == ["add"]
            ready, _ = await fetch(await other.consumer())
            assert uuids(ready) == [theirs.uuid]
