"""Task control at the broker API, on every backend: delayed delivery, unique enqueue, cancel, dead letters,
purge, concurrency slots and claims (the "task control" section of ``qtasks_fast.abc.broker``).

Each test runs on Redis, SQLite and memory backends built by ``make_backend``, the way an app builds
them; worker-side brokers are started on shallow copies, as ``Worker`` does.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid as _uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from qtasks_fast import _corelib as core

from qtasks_fast.abc.broker import Broker, DeadLetter, Delivery
from qtasks_fast.abc.storage import Storage
from qtasks_fast.backends import make_backend
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import META_UNIQUE, Envelope, Task

Q = "default"
HANDLERS = {"add": object()}


class Backend:
    def __init__(self, kind: str, url: str, app: str) -> None:
        self.kind = kind
        self.broker, self.storage = make_backend(url, app, GlobalConfig())

    async def worker(self, consumer: str = "w-0") -> Broker:
        w = copy.copy(self.broker)
        await w.start(consumer, "worker-" + consumer, [Q], self.storage)
        return w


@pytest.fixture(params=["redis", "sqlite", "memory"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    app = f"ctl{_uuid.uuid4().hex[:10]}"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/x.sqlite3"
    else:
        url = "memory://"
    b = Backend(request.param, url, app)
    yield b
    await b.broker.close()


def env(*, eta: float = 0.0, unique: str | None = None, args: tuple[Any, ...] = (1, 2)) -> Envelope:
    meta: dict[str, Any] = {META_UNIQUE: [unique, 60]} if unique else {}
    return Envelope(uuid=str(_uuid.uuid4()), task_name="add", args=list(args), queue=Q, created_at=time.time(),
                    eta=eta, meta=meta)


async def fetch(broker: Broker, count: int = 100, block: float = 0.0) -> list[Delivery]:
    ready: list[Delivery] = []
    bad: list[Any] = []
    for queue, flat in await broker.fetch(count, block):
        core.decode_batch(queue, flat, HANDLERS, 1 << 20, ready, bad)
    assert bad == []
    return ready


async def fetch_until(broker: Broker, timeout: float) -> list[Delivery]:
    """Fetch like a worker (blocking reads) until something comes or ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        got = await fetch(broker, block=min(left, 1.0))
        if got:
            return got
    return []


def uuids(ds: list[Delivery]) -> list[str]:
    return [d.envelope.uuid for d in ds]


async def record(storage: Storage, uuid: str) -> Task:
    task = await storage.get(uuid, [Q])
    assert task is not None, f"no record for {uuid}"
    return task


def ok(d: Delivery, value: Any = None) -> tuple[Delivery, str, bytes, str, str]:
    return (d, "success", core.encode(value), "", "")


# ------------------------------------------------------------------------------------------- delayed
@pytest.mark.asyncio
async def test_delayed_envelope_is_held_until_its_eta(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    blocked = asyncio.create_task(fetch_until(worker, 5.0))  # an idle worker, already blocked in its read
    await asyncio.sleep(0.1)
    later = env(eta=time.time() + 0.6)
    assert not await broker.enqueue([later], storage)
    assert (await record(storage, later.uuid)).status == "new"
    got = await blocked
    assert uuids(got) == [later.uuid]
    assert later.eta - 0.05 <= time.time() < later.eta + 0.8  # not before its eta, and not long after
    assert got[0].deliveries == 1
    past = env(eta=time.time() - 5)  # an eta already passed is delivered at once
    await broker.enqueue([past], storage)
    assert uuids(await fetch(worker)) == [past.uuid]


@pytest.mark.asyncio
async def test_retry_with_backoff_is_held_like_a_delayed_envelope(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    parent = env()
    await broker.enqueue([parent], storage)
    (d,) = await fetch(worker)
    child = env(eta=time.time() + 0.5)
    child.retry_parent_uuid = parent.uuid
    await worker.settle([(d, "error", core.encode(None), "boom", child.uuid)], storage, [child])
    assert (await record(storage, child.uuid)).status == "new"
    assert await fetch(worker) == []  # backing off
    got = await fetch_until(worker, 3.0)
    assert uuids(got) == [child.uuid] and time.time() >= child.eta - 0.05


# -------------------------------------------------------------------------------------------- unique
@pytest.mark.asyncio
async def test_unique_enqueue_skips_and_names_the_holder(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    first, dup = env(unique="report:1"), env(unique="report:1")
    assert not await broker.enqueue([first], storage)
    assert await broker.enqueue([dup], storage) == {dup.uuid: first.uuid}
    other = env(unique="report:2")
    a, b = env(unique="batch"), env(unique="batch")  # a duplicate within one batch
    plain = env()
    skipped = await asyncio.to_thread(broker.enqueue_sync, [other, a, b, plain], storage)
    assert skipped == {b.uuid: a.uuid}
    assert await storage.get(dup.uuid, [Q]) is None and await storage.get(b.uuid, [Q]) is None
    worker = await backend.worker()
    assert sorted(uuids(await fetch(worker))) == sorted([first.uuid, other.uuid, a.uuid, plain.uuid])


async def sent(broker: Broker, storage: Storage, e: Envelope) -> bool:
    """Enqueue ``e``; False when its unique key was held (skipped)."""
    return not await broker.enqueue([e], storage)


@pytest.mark.asyncio
async def test_unique_key_is_given_back_when_its_task_is_cancelled_purged_or_dead(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    queued, delayed = env(unique="q"), env(unique="d", eta=time.time() + 30)
    purged, dead = env(unique="p"), env(unique="x")
    for e in (queued, delayed, purged):
        assert await sent(broker, storage, e)
    assert await broker.cancel(queued.uuid, Q, "no", storage) == "queued"
    assert await broker.cancel(delayed.uuid, Q, "no", storage) == "queued"
    assert await broker.purge(Q) == 1
    assert await sent(broker, storage, dead)
    (d,) = await fetch(worker)
    await worker.dead_letter([(d, "bad")], storage)
    # each key is free again: the same call can be sent anew, and its new record is the one that runs
    for key in ("q", "d", "p", "x"):
        again = env(unique=key)
        assert await sent(broker, storage, again), key
        assert (await record(storage, again.uuid)).status == "new"


@pytest.mark.asyncio
async def test_unique_key_is_given_back_by_a_final_failure_or_cancel_not_a_success_or_retry(
        backend: Backend) -> None:
    from qtasks_fast.middlewares.retries import retry_child

    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    good, bad, stopped, flaky = env(unique="ok"), env(unique="bad"), env(unique="stop"), env(unique="flaky")
    flaky.retry = 1
    for e in (good, bad, stopped, flaky):
        assert await sent(broker, storage, e)
    by_uuid = {d.envelope.uuid: d for d in await fetch(worker)}
    child = retry_child(flaky, None, RuntimeError("once"))
    assert child is not None
    await worker.settle([ok(by_uuid[good.uuid]), (by_uuid[bad.uuid], "error", core.encode(None), "boom", ""),
                         (by_uuid[stopped.uuid], "cancel", core.encode(None), "stop", ""),
                         (by_uuid[flaky.uuid], "error", core.encode(None), "once", child.uuid)], storage, [child])
    assert not await sent(broker, storage, env(unique="ok"))  # a success keeps its key for the ttl
    assert not await sent(broker, storage, env(unique="flaky"))  # a retry follows: still held
    assert await sent(broker, storage, env(unique="bad"))
    assert await sent(broker, storage, env(unique="stop"))
    got = {d.envelope.uuid: d for d in await fetch(worker)}  # the child and the two calls sent again
    d = got.pop(child.uuid)
    await worker.settle([(d, "error", core.encode(None), "twice", ""), *(ok(x) for x in got.values())], storage, [])
    assert await sent(broker, storage, env(unique="flaky"))  # the last retry failed: the key goes back


@pytest.mark.asyncio
async def test_unique_key_claimed_again_is_not_given_back_by_its_old_holder(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    old = env()
    old.meta = {META_UNIQUE: ["k", 0.3]}
    assert await sent(broker, storage, old)
    (d,) = await fetch(worker)
    await asyncio.sleep(0.4)  # the key expires while old runs, and a new call claims it
    new = env(unique="k")
    assert await sent(broker, storage, new)
    await worker.settle([(d, "error", core.encode(None), "boom", "")], storage, [])
    assert await broker.enqueue([env(unique="k")], storage) not in (None, {})  # still held by new
    assert await broker.cancel(new.uuid, Q, "no", storage) == "queued"
    assert await sent(broker, storage, env(unique="k"))


# -------------------------------------------------------------------------------------------- cancel
@pytest.mark.asyncio
async def test_cancel_of_a_queued_task_ends_it_unrun(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    e, keep = env(), env()
    await broker.enqueue([e, keep], storage, wait=True)
    waiter = asyncio.create_task(storage.wait(e.uuid, [Q], 5.0))
    await asyncio.sleep(0.1)
    assert not waiter.done()
    assert await broker.cancel(e.uuid, Q, "not needed", storage) == "queued"
    task = await asyncio.wait_for(waiter, 2.0)
    assert task is not None and task.status == "cancel" and task.traceback == "not needed"
    worker = await backend.worker()
    assert uuids(await fetch(worker)) == [keep.uuid]  # the cancelled one is never handed out
    assert await fetch(await backend.worker("w-1")) == []
    assert await broker.cancel(e.uuid, Q, "again", storage) == "finished"
    assert (await record(storage, e.uuid)).traceback == "not needed"
    assert await broker.cancel(str(_uuid.uuid4()), Q, "?", storage) == "unknown"


@pytest.mark.asyncio
async def test_cancel_of_a_delayed_task(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    later = env(eta=time.time() + 0.4)
    await broker.enqueue([later], storage)
    assert await broker.cancel(later.uuid, Q, "changed my mind", storage) == "queued"
    task = await record(storage, later.uuid)
    assert task.status == "cancel" and task.traceback == "changed my mind"
    worker = await backend.worker()
    assert await fetch_until(worker, 1.0) == []  # its eta passed: still never delivered


@pytest.mark.asyncio
async def test_cancel_of_a_fetched_task_is_sent_to_the_workers(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    e = env()
    await broker.enqueue([e], storage)
    (d,) = await fetch(worker)
    requests = worker.cancel_requests()
    heard = asyncio.ensure_future(requests.__anext__())
    deadline = time.monotonic() + 5
    while not heard.done():  # the listener subscribes in the background: ask until it hears one
        assert time.monotonic() < deadline, "no cancel request arrived"
        assert await broker.cancel(e.uuid, Q, "stop it", storage) == "running"
        await asyncio.wait({heard}, timeout=0.2)
    assert heard.result() == (e.uuid, "stop it")
    await worker.settle([(d, "cancel", core.encode(None), "stop it", "")], storage, [])
    task = await record(storage, e.uuid)
    assert task.status == "cancel" and task.traceback == "stop it"
    assert await broker.cancel(e.uuid, Q, "late", storage) == "finished"
    rest = asyncio.ensure_future(_drain(requests))
    await worker.close()
    await asyncio.wait_for(rest, 3.0)  # the listener ends with its broker


async def _drain(it: AsyncIterator[Any]) -> None:
    async for _ in it:
        pass


# -------------------------------------------------------------------------------------- dead letters
@pytest.mark.asyncio
async def test_dead_letters_list_requeue_and_purge(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    envs = [env(args=(i,)) for i in range(3)]
    await broker.enqueue(envs, storage)
    ds = await fetch(worker)
    await worker.dead_letter([(d, f"reason {d.envelope.args[0]}") for d in ds], storage)
    letters = await broker.dead_letters(Q)
    assert all(isinstance(x, DeadLetter) for x in letters)
    assert [x.uuid for x in letters] == [e.uuid for e in reversed(envs)]  # newest first
    x0 = letters[-1]
    assert (x0.queue, x0.reason, x0.task_name) == (Q, "reason 0", "add") and x0.at <= time.time()
    assert msgspec.msgpack.decode(x0.body, type=Envelope).uuid == envs[0].uuid
    assert (await record(storage, envs[0].uuid)).status == "error"

    assert await broker.requeue_dead(Q, [x0.id]) == 1
    assert (await record(storage, envs[0].uuid)).status == "new"
    (again,) = await fetch(worker)
    assert again.envelope.uuid == envs[0].uuid and again.deliveries == 1  # a fresh delivery count
    await worker.settle([ok(again, "ran")], storage, [])
    assert (await record(storage, envs[0].uuid)).returning == "ran"

    assert await broker.purge_dead(Q, [letters[0].id]) == 1
    assert [x.uuid for x in await broker.dead_letters(Q)] == [envs[1].uuid]
    assert await broker.requeue_dead(Q) == 1
    assert uuids(await fetch(worker)) == [envs[1].uuid]
    assert await broker.dead_letters(Q) == []
    (d2,) = [d for d in ds if d.envelope.uuid == envs[2].uuid]
    await worker.dead_letter([(d2, "again")], storage)  # the id may be new: purge everything left
    assert await broker.purge_dead(Q) >= 0 and await broker.dead_letters(Q) == []


# --------------------------------------------------------------------------------------------- purge
@pytest.mark.asyncio
async def test_purge_drops_queued_and_delayed_but_not_running(backend: Backend) -> None:
    broker, storage = backend.broker, backend.storage
    worker = await backend.worker()
    running = env()
    await broker.enqueue([running], storage)
    (d,) = await fetch(worker)
    queued, delayed = [env(), env()], env(eta=time.time() + 0.3)
    await broker.enqueue([*queued, delayed], storage)
    assert await broker.purge(Q) == 3
    for e in (*queued, delayed):
        assert (await record(storage, e.uuid)).status == "cancel"
    assert (await record(storage, running.uuid)).status == "process"
    assert await fetch_until(worker, 0.8) == []
    await worker.settle([ok(d, 1)], storage, [])
    assert (await record(storage, running.uuid)).status == "success"
    assert await broker.purge(Q) == 0


@pytest.mark.asyncio
async def test_purge_leaves_tasks_that_finished_while_an_older_one_runs(backend: Backend) -> None:
    """Redis keeps a finished entry in its stream while an older one is still pending (it is trimmed
    later, see ``tidy`` in redis.lua): purge must not take it for a queued task and cancel its record."""
    broker, storage = backend.broker, backend.storage
    slow_worker, fast_worker = await backend.worker("w-0"), await backend.worker("w-1")
    first, second, queued = env(), env(), env()
    await broker.enqueue([first], storage)
    (slow,) = await fetch(slow_worker)
    await broker.enqueue([second], storage)
    (fast,) = await fetch(fast_worker)
    await fast_worker.settle([ok(fast, 2)], storage, [])
    await broker.enqueue([queued], storage)
    assert await broker.purge(Q) == 1
    assert (await record(storage, second.uuid)).status == "success"
    assert (await record(storage, queued.uuid)).status == "cancel"
    await slow_worker.settle([ok(slow, 1)], storage, [])
    assert (await record(storage, first.uuid)).status == "success"
    if backend.kind == "redis":  # once nothing is pending, every finished entry is gone from the stream
        from qtasks_fast.backends.redis.broker import RedisBroker, queue_prefix

        assert isinstance(broker, RedisBroker)
        assert await broker.conn.aio.xlen(f"{queue_prefix(broker.app_name, Q)}:s:0") == 0


@pytest.mark.asyncio
async def test_redis_stream_stays_small_while_a_long_task_runs(redis_url: str) -> None:
    """Trimming waits for the oldest pending entry; once that one is older than a few seconds (a long
    task), finished entries are deleted at once, so a long task does not make the stream grow."""
    from qtasks_fast.backends.redis.broker import RedisBroker, queue_prefix

    b = Backend("redis", redis_url, f"ctl{_uuid.uuid4().hex[:10]}")
    try:
        broker, storage = b.broker, b.storage
        assert isinstance(broker, RedisBroker)
        stream = f"{queue_prefix(broker.app_name, Q)}:s:0"
        long_worker, worker = await b.worker("w-0"), await b.worker("w-1")
        await broker.enqueue([env()], storage)
        (long,) = await fetch(long_worker)
        await broker.enqueue([env() for _ in range(5)], storage)
        await worker.settle([ok(d) for d in await fetch(worker)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 6  # a young pending entry: the finished ones wait
        await asyncio.sleep(5.2)
        await broker.enqueue([env() for _ in range(5)], storage)
        await worker.settle([ok(d) for d in await fetch(worker)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 6  # the first five still wait, the new five are gone
        await long_worker.settle([ok(long)], storage, [])
        assert await broker.conn.aio.xlen(stream) == 0
    finally:
        await b.broker.close()


# ----------------------------------------------------------------------------------- slots and claims
@pytest.mark.asyncio
async def test_acquire_limits_slots_until_released_or_expired(backend: Backend) -> None:
    broker = await backend.worker()
    key = "task:add"
    assert await broker.acquire(key, Q, 2, "t1", 30)
    assert await broker.acquire(key, Q, 2, "t2", 30)
    assert not await broker.acquire(key, Q, 2, "t3", 30)
    assert await broker.acquire(key, Q, 2, "t1", 30)  # renewing a held slot
    await broker.release_slot(key, Q, "t1")
    assert await broker.acquire(key, Q, 2, "t3", 30)
    assert not await broker.acquire(key, Q, 2, "t4", 30)
    assert await broker.acquire("task:short", Q, 1, "a", 0.3)
    assert not await broker.acquire("task:short", Q, 1, "b", 0.3)
    await asyncio.sleep(0.4)  # "a" was not renewed within its ttl: its holder is presumed dead
    assert await broker.acquire("task:short", Q, 1, "b", 0.3)


@pytest.mark.asyncio
async def test_claim_is_granted_once_per_ttl(backend: Backend) -> None:
    broker = backend.broker
    assert await broker.claim("tick:1", 0.3)
    assert not await broker.claim("tick:1", 0.3)
    assert await broker.claim("tick:2", 0.3)
    await asyncio.sleep(0.4)
    assert await broker.claim("tick:1", 0.3)


# ---------------------------------------------------------------------------------- foreign storage
@pytest.mark.asyncio
async def test_control_keeps_a_foreign_storage_in_step(backend: Backend) -> None:
    """A storage the broker cannot fuse with gets its records through the Storage API."""
    from qtasks_fast.backends.memory.broker import InMemoryState
    from qtasks_fast.backends.memory.storage import InMemoryStorage

    foreign = InMemoryStorage(state=InMemoryState())
    worker = copy.copy(backend.broker)
    await worker.start("w-0", "worker-w-0", [Q], foreign)
    assert not worker.fused(foreign)
    first, dup, later, queued, dead = env(unique="k"), env(unique="k"), env(eta=time.time() + 0.3), env(), env()
    assert await worker.enqueue([first], foreign) in (None, {})
    assert await worker.enqueue([dup, later], foreign) == {dup.uuid: first.uuid}
    assert await foreign.get(dup.uuid, [Q]) is None
    assert (await record(foreign, later.uuid)).status == "new"
    (d,) = await fetch(worker)
    await worker.settle([ok(d, 1)], foreign, [])
    assert await worker.cancel(first.uuid, Q, "late", foreign) == "finished"
    await worker.enqueue([queued], foreign)
    assert await worker.cancel(queued.uuid, Q, "no", foreign) == "queued"
    assert (await record(foreign, queued.uuid)).status == "cancel"
    await worker.enqueue([dead], foreign)
    (d,) = await fetch(worker)
    await worker.dead_letter([(d, "bad")], foreign)
    assert (await record(foreign, dead.uuid)).status == "error"
    assert await worker.requeue_dead(Q) == 1
    assert (await record(foreign, dead.uuid)).status == "new"
    assert await worker.purge(Q) == 2  # the requeued one and the delayed one
    for e in (dead, later):
        assert (await record(foreign, e.uuid)).status == "cancel"
    assert await fetch_until(worker, 0.6) == []
