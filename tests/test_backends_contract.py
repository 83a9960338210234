"""One Broker + Storage contract, checked against the embedded SQLite and the in-memory backends.

Every test runs on both backends (SQLite on a fresh file in ``tmp_path``) and
asserts the behaviour the worker relies on: priorities, at-least-once hand-out
with leases and takeover, delivery counting and dead letters, release, fused
record writes and ``wait`` following retry chains. The multi-process test
checks the one property only SQLite needs: separate OS processes never claim
the same message.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid as _uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # the pure-Python core warns when the extension is not built
    warnings.simplefilter("ignore", RuntimeWarning)
    from qtasks_fast import _corelib as core

from qtasks_fast.abc.broker import Broker, Delivery
from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends.memory.broker import InMemoryBroker, InMemoryState
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.backends.sqlite.storage import SqliteStorage
from qtasks_fast.schemas import Envelope, Task

ROOT = Path(__file__).resolve().parent.parent
Q = "default"
HANDLERS = {"add": object(), "boom": object()}


class Backend:
    """Builds brokers and storages that share one file (SQLite) or one state (memory)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = str(tmp_path / "queue.sqlite3")
        self.state = InMemoryState()

    def broker(self, **kw: Any) -> SqliteBroker | InMemoryBroker:
        if self.kind == "sqlite":
            return SqliteBroker(self.path, **kw)
        return InMemoryBroker(state=self.state, **kw)

    def storage(self, **kw: Any) -> Storage:
        if self.kind == "sqlite":
            return SqliteStorage(self.path, **kw)
        return InMemoryStorage(state=self.state, **kw)

    def foreign_storage(self) -> Storage:
        """A storage the broker cannot fuse with: exercises the broker's plain Storage-API path."""
        return InMemoryStorage(state=InMemoryState())


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


def env(name: str = "add", *, prio: int = 0, queue: str = Q, retry: int = 0, parent: str | None = None,
        args: tuple[Any, ...] = (1, 2)) -> Envelope:
    return Envelope(uuid=str(_uuid.uuid4()), task_name=name, args=list(args), priority=prio, queue=queue,
                    created_at=time.time(), retry=retry, retry_parent_uuid=parent)


AnyBroker = SqliteBroker | InMemoryBroker


async def started(backend: Backend, consumer: str = "w-0", storage: Storage | None = None, **kw: Any) -> AnyBroker:
    broker = backend.broker(**kw)
    await broker.start(consumer, "worker-" + consumer, [Q], storage or backend.storage())
    return broker


async def fetch(broker: Broker, count: int = 100, block: float = 0.0) -> tuple[list[Delivery], list[Any]]:
    ready: list[Delivery] = []
    bad: list[Any] = []
    for queue, flat in await broker.fetch(count, block):
        core.decode_batch(queue, flat, HANDLERS, 1 << 20, ready, bad)
    return ready, bad


def ev(d: Delivery) -> Envelope:
    assert d.envelope is not None
    return d.envelope


async def record(storage: Storage, uuid: str) -> Task:
    task = await storage.get(uuid, [Q])
    assert task is not None, f"no record for {uuid}"
    return task


def ok(d: Delivery, value: Any) -> tuple[Delivery, str, bytes, str, str]:
    return (d, "success", core.encode(value), "", "")


# ---------------------------------------------------------------------------------------------- basics
@pytest.mark.asyncio
async def test_enqueue_fetch_settle_get(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    assert broker.marks_started(storage)  # fused: fetch itself marks records "process"
    e = env()
    await broker.enqueue([e], storage)
    assert (await record(storage, e.uuid)).status == "new"
    ready, bad = await fetch(broker)
    assert bad == [] and len(ready) == 1
    d = ready[0]
    assert (ev(d).uuid, ev(d).args, d.deliveries, d.prio) == (e.uuid, [1, 2], 1, 0)
    running = await storage.get(e.uuid, [Q])
    assert running is not None and running.status == "process" and running.worker_id == "worker-w-0"
    await broker.settle([ok(d, {"sum": [3]})], storage, [])
    task = await storage.get(e.uuid, [Q])
    assert task is not None and task.status == "success" and task.returning == {"sum": [3]}
    assert str(task.uuid) == e.uuid and task.args == (1, 2) and task.updated_at >= task.created_at
    assert await storage.get(e.uuid, ["other-queue"]) is None  # records are per queue, as in Redis
    assert await fetch(broker) == ([], [])  # acked: never handed out again, not even to a replacement
    assert await fetch(await started(backend)) == ([], [])


@pytest.mark.asyncio
async def test_priorities_then_fifo_and_count(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    envs = [env(prio=p, args=(i,)) for i, p in enumerate([5, 0, 9, 0, 5, 1])]
    await broker.enqueue(envs, storage)
    await broker.enqueue([env(queue="elsewhere")], storage)  # a queue this worker does not serve
    first, _ = await fetch(broker, count=3)
    rest, _ = await fetch(broker, count=10)
    assert [(d.prio, ev(d).args[0]) for d in first] == [(0, 1), (0, 3), (1, 5)]
    assert [(d.prio, ev(d).args[0]) for d in rest] == [(5, 0), (5, 4), (9, 2)]


@pytest.mark.asyncio
async def test_sync_twins_work_without_a_running_loop(backend: Backend) -> None:
    storage, broker = backend.storage(), backend.broker()
    e = env()

    def producer() -> tuple[Any, Any, Any]:  # a thread with no event loop, like the sync client
        broker.enqueue_sync([e], storage, wait=True)
        return storage.get_sync(e.uuid, [Q]), storage.wait_sync(e.uuid, [Q], 0.05), storage.get_sync("nope", [Q])

    got, waited, missing = await asyncio.to_thread(producer)
    assert got.status == "new" and waited.status == "new" and missing is None
    worker = await started(backend, storage=storage)
    ready, _ = await fetch(worker)
    assert [ev(d).uuid for d in ready] == [e.uuid]


# ------------------------------------------------------------------------------------ leases, takeover
@pytest.mark.asyncio
async def test_restarted_consumer_takes_over_its_own_messages_at_once(backend: Backend) -> None:
    storage = backend.storage()
    crashed = await started(backend, storage=storage)
    e = env()
    await crashed.enqueue([e], storage)
    (d1,), _ = await fetch(crashed)
    assert d1.deliveries == 1
    other = await started(backend, "w-1", storage=storage)
    assert await fetch(other) == ([], [])  # lease (30 s) still running: nobody else may take it
    replacement = await started(backend, "w-0", storage=storage)  # same slot name after a crash
    (d2,), _ = await fetch(replacement)
    assert (d2.msg_id, ev(d2).uuid, d2.deliveries) == (d1.msg_id, e.uuid, 2)
    assert await fetch(replacement) == ([], [])  # only the first fetch after start takes over


@pytest.mark.asyncio
async def test_expired_lease_is_reclaimed_by_another_consumer(backend: Backend) -> None:
    storage = backend.storage()
    owner = await started(backend, storage=storage, lease_seconds=0.3)
    thief = await started(backend, "w-1", storage=storage, lease_seconds=0.3)
    e = env()
    await owner.enqueue([e], storage)
    (d,), _ = await fetch(owner)
    for _ in range(3):  # a live owner renews, and keeps it past the original lease
        await asyncio.sleep(0.15)
        assert await owner.renew([d]) == [d]  # still held: renewed and reported
        assert await fetch(thief) == ([], [])
    t0 = time.monotonic()
    (taken,), _ = await fetch(thief, block=3.0)  # owner stopped renewing: a blocked fetch gets it
    assert time.monotonic() - t0 < 1.0
    assert (taken.msg_id, taken.deliveries) == (d.msg_id, 2)
    assert not await owner.renew([d])  # the old owner learns it lost it, does not steal it back ...
    await owner.release([d])  # ... nor hands back what is no longer its
    assert await fetch(await started(backend, "w-2", storage=storage)) == ([], [])
    await thief.settle([ok(taken, 1)], storage, [])
    assert (await record(storage, e.uuid)).worker_id == "worker-w-1"


@pytest.mark.asyncio
async def test_max_deliveries_dead_letters_and_fails_the_record(backend: Backend) -> None:
    storage = backend.storage()
    e = env()
    await backend.broker().enqueue([e], storage)
    for n in (1, 2):  # a task that kills its worker every time
        (d,), _ = await fetch(await started(backend, storage=storage, max_deliveries=2))
        assert d.deliveries == n
    last = await started(backend, storage=storage, max_deliveries=2)
    assert await fetch(last) == ([], [])
    (dead,) = await last.dead_letters(Q)
    assert dead.uuid == e.uuid and "delivered 2 times" in dead.reason and dead.body == core.encode(e)
    task = await storage.wait(e.uuid, [Q], 1.0)
    assert task is not None and task.status == "error"
    assert str(task.traceback).startswith("dead-lettered: delivered 2 times")


@pytest.mark.asyncio
async def test_a_last_attempt_is_handed_out_alone_so_a_poison_message_takes_no_batch_mate_with_it(
        backend: Backend) -> None:
    """A message that kills its worker on every run, fetched in one batch with healthy ones: the healthy ones
    are charged deliveries by each crash, but each last attempt comes alone, so they all run and only the
    culprit is dead-lettered (as Redis parks last attempts, see redis.lua op fetch)."""
    storage = backend.storage()
    poison, healthy = env("boom"), [env(args=(i, 0)) for i in range(4)]
    await backend.broker().enqueue([poison, *healthy], storage)
    for n in (1, 2):  # the worker slot dies with the whole batch in flight, twice
        ready, _ = await fetch(await started(backend, storage=storage, max_deliveries=3))
        assert sorted(d.deliveries for d in ready) == [n] * 5
    worker = await started(backend, storage=storage, max_deliveries=3)
    done: list[str] = []
    for _ in range(5):
        ready, _ = await fetch(worker)
        assert len(ready) == 1 and ready[0].deliveries == 3, [ev(d).task_name for d in ready]  # alone
        (d,) = ready
        if ev(d).task_name == "boom":  # it kills the worker again: a replacement comes
            worker = await started(backend, storage=storage, max_deliveries=3)
            continue
        await worker.settle([ok(d, 0)], storage, [])
        done.append(ev(d).uuid)
    assert sorted(done) == sorted(e.uuid for e in healthy)
    assert await fetch(await started(backend, storage=storage, max_deliveries=3)) == ([], [])
    (dead,) = await worker.dead_letters(Q)
    assert dead.uuid == poison.uuid and "delivered 3 times" in dead.reason


@pytest.mark.asyncio
async def test_a_last_attempt_passed_over_in_a_takeover_comes_next_without_waiting_for_a_lease(
        backend: Backend) -> None:
    storage = backend.storage()
    b = env(prio=1)
    await backend.broker().enqueue([b], storage)
    ((d,), _) = await fetch(await started(backend, storage=storage, max_deliveries=3))  # b: 1 delivery; crash
    a = env(prio=0)
    await backend.broker().enqueue([a], storage)
    ready, _ = await fetch(await started(backend, storage=storage, max_deliveries=3))  # b: 2, a: 1; crash
    assert sorted((ev(d).uuid, d.deliveries) for d in ready) == sorted([(b.uuid, 2), (a.uuid, 1)])
    worker = await started(backend, storage=storage, max_deliveries=3)  # lease 30 s: nothing expires here
    ((first,), _) = await fetch(worker)
    assert (ev(first).uuid, first.deliveries) == (a.uuid, 2)  # b's last attempt is not fetched with it
    await worker.settle([ok(first, 0)], storage, [])
    ((last,), _) = await fetch(worker)
    assert (ev(last).uuid, last.deliveries) == (b.uuid, 3)  # alone, at once


@pytest.mark.asyncio
async def test_release_hands_back_at_once_without_counting(backend: Backend) -> None:
    storage = backend.storage()
    draining = await started(backend, storage=storage)
    envs = [env(args=(i,)) for i in range(3)]
    await draining.enqueue(envs, storage)
    (d0, d1), _ = await fetch(draining, count=2)
    other = await started(backend, "w-1", storage=storage)
    blocked = asyncio.create_task(fetch(other, count=1, block=5.0))
    ready, _ = await blocked  # the third message is free
    assert [ev(d).args[0] for d in ready] == [2]
    blocked = asyncio.create_task(fetch(other, count=10, block=5.0))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    t0 = time.monotonic()
    await draining.release([d0])
    (again,), _ = await blocked
    assert time.monotonic() - t0 < 0.5  # a drain does not wait for the lease
    assert (again.msg_id, again.deliveries) == (d0.msg_id, 1)  # unrun: the hand-out is not counted
    await draining.release([d1])
    (first,), _ = await fetch(other)
    assert ev(first).args[0] == 1


@pytest.mark.asyncio
async def test_malformed_and_unknown_messages_are_dead_lettered(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    broker.enqueue_raw(Q, b"\xc1 not msgpack")
    unknown = env("no_such_task")
    await broker.enqueue([unknown], storage)
    ready, bad = await fetch(broker)
    assert ready == [] and len(bad) == 2
    await broker.dead_letter(bad, storage)
    letters = await broker.dead_letters(Q)
    assert sorted(x.reason.split(":")[0] for x in letters) == ["malformed message", "unknown task 'no_such_task'"]
    task = await record(storage, unknown.uuid)
    assert task.status == "error" and "unknown task" in str(task.traceback)
    assert await fetch(await started(backend, storage=storage)) == ([], [])  # gone, even for a takeover


# ------------------------------------------------------------------------------------------------ wait
@pytest.mark.asyncio
async def test_wait_blocks_until_settled(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    e = env()
    await broker.enqueue([e], storage, wait=True)
    waiter = asyncio.create_task(storage.wait(e.uuid, [Q], 5.0))
    (d,), _ = await fetch(broker)
    await asyncio.sleep(0.1)
    assert not waiter.done()
    t0 = time.monotonic()
    await broker.settle([ok(d, 42)], storage, [])
    task = await asyncio.wait_for(waiter, 1.0)
    assert time.monotonic() - t0 < 0.3
    assert task is not None and task.status == "success" and task.returning == 42


@pytest.mark.asyncio
async def test_wait_follows_the_retry_chain(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    parent = env("boom", retry=1)
    await broker.enqueue([parent], storage, wait=True)
    waiter = asyncio.create_task(storage.wait(parent.uuid, [Q], 5.0))
    (d,), _ = await fetch(broker)
    child = env("boom", retry=0, parent=parent.uuid)
    await broker.settle([(d, "error", core.encode(None), "Traceback: boom", child.uuid)], storage, [child])
    await asyncio.sleep(0.1)
    assert not waiter.done()  # the failed attempt is not the answer: its retry is
    failed = await record(storage, parent.uuid)
    assert failed.status == "error" and str(failed.retry_child_uuid) == child.uuid
    assert failed.traceback == "Traceback: boom"
    (d2,), _ = await fetch(broker)
    assert ev(d2).uuid == child.uuid
    await broker.settle([ok(d2, 7)], storage, [])
    task = await asyncio.wait_for(waiter, 1.0)
    assert task is not None and str(task.uuid) == child.uuid and task.status == "success" and task.returning == 7
    assert str(task.retry_parent_uuid) == parent.uuid


@pytest.mark.asyncio
async def test_wait_times_out_with_current_record_or_none(backend: Backend) -> None:
    storage = backend.storage()
    e = env()
    await backend.broker().enqueue([e], storage)
    t0 = time.monotonic()
    task = await storage.wait(e.uuid, [Q], 0.2)
    assert 0.19 <= time.monotonic() - t0 < 0.6
    assert task is not None and task.status == "new"
    assert await storage.wait(str(_uuid.uuid4()), [Q], 0.2) is None


@pytest.mark.asyncio
async def test_wait_across_threads(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    a, b = env(args=(1,)), env(args=(2,))
    await broker.enqueue([a, b], storage, wait=True)
    (da, db), _ = await fetch(broker)
    # a sync client in another thread waits while this loop settles
    sync_waiter = asyncio.ensure_future(asyncio.to_thread(storage.wait_sync, a.uuid, [Q], 5.0))
    await asyncio.sleep(0.1)
    assert not sync_waiter.done()
    await broker.settle([ok(da, "a")], storage, [])
    assert getattr(await asyncio.wait_for(sync_waiter, 1.0), "returning", None) == "a"
    # this loop waits while another thread (its own loop) settles
    waiter = asyncio.create_task(storage.wait(b.uuid, [Q], 5.0))
    await asyncio.sleep(0.05)
    thread = threading.Thread(target=lambda: asyncio.run(broker.settle([ok(db, "b")], storage, [])))
    thread.start()
    assert getattr(await asyncio.wait_for(waiter, 1.0), "returning", None) == "b"
    thread.join()


@pytest.mark.asyncio
async def test_blocking_fetch_wakes_on_enqueue_from_another_thread(backend: Backend) -> None:
    storage = backend.storage()
    broker = await started(backend, storage=storage)
    e = env()
    blocked = asyncio.create_task(fetch(broker, block=5.0))
    await asyncio.sleep(0.1)
    assert not blocked.done()
    t0 = time.monotonic()
    await asyncio.to_thread(broker.enqueue_sync, [e], storage)
    ready, _ = await asyncio.wait_for(blocked, 1.0)
    assert time.monotonic() - t0 < 0.3 and [ev(d).uuid for d in ready] == [e.uuid]


@pytest.mark.asyncio
async def test_results_expire_after_result_ttl(backend: Backend) -> None:
    storage = backend.storage(result_ttl=0.2)
    broker = await started(backend, storage=storage, result_ttl=0.2)
    e = env()
    await broker.enqueue([e], storage)
    (d,), _ = await fetch(broker)
    await broker.settle([ok(d, 1)], storage, [])
    assert (await record(storage, e.uuid)).returning == 1
    await asyncio.sleep(0.3)
    assert await storage.get(e.uuid, [Q]) is None
    assert await storage.wait(e.uuid, [Q], 0.1) is None
    if isinstance(storage, SqliteStorage):  # deleted on sight, not just hidden
        assert storage.conn.read("SELECT count(*) FROM records")[0][0] == 0


@pytest.mark.asyncio
async def test_foreign_storage_goes_through_the_storage_api(backend: Backend) -> None:
    foreign = backend.foreign_storage()
    broker = await started(backend, storage=foreign, max_deliveries=1)
    assert not broker.marks_started(foreign)
    ok_env, retried, crashy = env(args=(1,)), env("boom", retry=1), env(args=(3,))
    await broker.enqueue([ok_env, retried, crashy], foreign, wait=True)
    assert (await record(foreign, ok_env.uuid)).status == "new"
    ready, _ = await fetch(broker)
    await foreign.mark_started(ready, "worker-w-0")
    assert (await record(foreign, crashy.uuid)).status == "process"
    child = env("boom", parent=retried.uuid)
    await broker.settle([ok(ready[0], "fine"), (ready[1], "error", core.encode(None), "tb", child.uuid)], foreign,
                        [child])
    (d_child,), _ = await fetch(broker)
    await broker.settle([ok(d_child, "retried")], foreign, [])
    assert getattr(await foreign.wait(retried.uuid, [Q], 1.0), "returning", None) == "retried"
    assert (await record(foreign, ok_env.uuid)).returning == "fine"
    # crashy's worker died; with max_deliveries=1 the replacement dead-letters it into the foreign storage too
    assert await fetch(await started(backend, storage=foreign, max_deliveries=1)) == ([], [])
    task = await record(foreign, crashy.uuid)
    assert task.status == "error" and str(task.traceback).startswith("dead-lettered")


# -------------------------------------------------------------------------------- SQLite, many processes
WORKER = r"""
import asyncio, json, os, sys
from qtasks_fast import _corelib as core
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.backends.sqlite.storage import SqliteStorage

async def main(path, consumer, out, go, done):
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    await broker.start(consumer, consumer, ["default"], storage)
    open(out + ".ready", "w").close()
    while not os.path.exists(go):
        await asyncio.sleep(0.005)
    seen = []
    while True:
        finished = os.path.exists(done)  # checked first: the producer commits before it writes `done`
        batch = await broker.fetch(25, 0.2)
        if not batch:
            if finished:
                break
            continue
        ready, bad = [], []
        for queue, flat in batch:
            core.decode_batch(queue, flat, {"add": 1}, 1 << 20, ready, bad)
        assert not bad, bad
        seen += [[d.msg_id, d.envelope.uuid, d.deliveries] for d in ready]
        await broker.settle([(d, "success", core.encode(consumer), "", "") for d in ready], storage, [])
        await asyncio.sleep(0.002)  # let the other process in even on a loaded machine
    with open(out, "w") as f:
        json.dump(seen, f)

asyncio.run(main(*sys.argv[1:]))
"""

PRODUCER = r"""
import json, os, sys, time, uuid
from qtasks_fast.backends.sqlite.broker import SqliteBroker
from qtasks_fast.schemas import Envelope
from qtasks_fast.backends.sqlite.storage import SqliteStorage

path, out, go, done = sys.argv[1:]
broker, storage = SqliteBroker(path), SqliteStorage(path)
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
uuids = []
for _ in range(40):
    envs = [Envelope(uuid=str(uuid.uuid4()), task_name="add", created_at=time.time()) for _ in range(25)]
    broker.enqueue_sync(envs, storage)
    uuids += [e.uuid for e in envs]
with open(out, "w") as f:
    json.dump(uuids, f)
open(done, "w").close()
"""


def test_sqlite_processes_never_claim_the_same_message(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    preloaded = [env() for _ in range(1000)]
    broker.enqueue_sync(preloaded, storage)
    go, done = str(tmp_path / "go"), str(tmp_path / "done")
    run_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    outs = [str(tmp_path / f"w{i}.json") for i in range(2)]
    prod_out = str(tmp_path / "producer.json")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, path, f"w-{i}", outs[i], go, done], env=run_env)
             for i in range(2)]
    procs.append(subprocess.Popen([sys.executable, "-c", PRODUCER, path, prod_out, go, done], env=run_env))
    try:
        deadline = time.monotonic() + 60
        while not all(os.path.exists(o + ".ready") for o in [*outs, prod_out]):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "helpers did not start"
            time.sleep(0.01)
        Path(go).touch()  # all three hit the file at once from here on
        for p in procs:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    seen = [json.loads(Path(o).read_text()) for o in outs]
    ids = [m[0] for part in seen for m in part]
    uuids = [m[1] for part in seen for m in part]
    expected = {e.uuid for e in preloaded} | set(json.loads(Path(prod_out).read_text()))
    assert len(expected) == 2000
    assert len(ids) == len(set(ids)) == 2000  # no message handed to two processes
    assert sorted(uuids) == sorted(expected)  # and none lost
    assert all(m[2] == 1 for part in seen for m in part)
    assert all(len(part) > 0 for part in seen)  # both really competed
    counts = dict(storage.conn.read("SELECT status, count(*) FROM records GROUP BY status"))
    assert counts == {"success": 2000}
    assert storage.conn.read("SELECT count(*) FROM messages")[0][0] == 0


def _enqueue_in_child(broker: SqliteBroker, storage: SqliteStorage, e: Envelope) -> None:
    broker.enqueue_sync([e], storage)


@pytest.mark.skipif(sys.platform == "win32", reason="fork only")
def test_sqlite_connection_is_reopened_after_fork(tmp_path: Path) -> None:
    path = str(tmp_path / "fork.sqlite3")
    broker, storage = SqliteBroker(path), SqliteStorage(path)
    before = env()
    broker.enqueue_sync([before], storage)  # the parent has an open handle now
    parent_db = broker.conn.db
    after = env()
    child = multiprocessing.get_context("fork").Process(target=_enqueue_in_child, args=(broker, storage, after))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert broker.conn.db is parent_db  # the parent keeps its own handle
    assert getattr(storage.get_sync(after.uuid, [Q]), "status", None) == "new"
    got = asyncio.run(_fetch_uuids(broker, storage))
    assert got == [before.uuid, after.uuid]


async def _fetch_uuids(broker: Broker, storage: Storage) -> list[str]:
    await broker.start("w-0", "w", [Q], storage)
    ready, _ = await fetch(broker)
    return [ev(d).uuid for d in ready]
