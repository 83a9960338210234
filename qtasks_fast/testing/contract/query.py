"""Contract: the query side (:mod:`qtasks_fast.abc.query`): lists, filters, pagination, counts, details,
the event feed and its resume, throughput, queue depth and the worker registry's lost workers.

Statuses are made by the real broker API (enqueue, fetch, settle, dead_letter, cancel), as a worker makes
them. Consumers here are started the way :class:`~qtasks_fast.worker.worker.Worker` starts them: the
consumer name ``<worker-id>-<slot>`` is also the worker id the records carry. Times are compared with a
few milliseconds of slack (a backend may keep milliseconds).
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid as _uuid
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from qtasks_fast.abc.broker import LOST_KEPT, Broker, Delivery, Outcome, WorkerInfo
from qtasks_fast.abc.capabilities import Cancel, QueueStatistics, WorkerRegistry, require
from qtasks_fast.abc.query import TaskEvent, TaskFilter, TaskQueries, TaskSummary
from qtasks_fast.schemas import META_RESTART_OF, Envelope
from qtasks_fast.testing.contract.harness import ContractBase, Harness, envelope, fetch, success

ALL = ("new", "process", "success", "error", "cancel")
SLACK = 0.005
TB = "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: Bad Input"


def queries(h: Harness) -> TaskQueries:
    """The storage's query side; a storage without it fails the suite with what to implement."""
    storage = h.storage
    assert isinstance(storage, TaskQueries), (
        f"{type(storage).__name__} does not implement TaskQueries: subclass qtasks_fast.abc.query.TaskQueries")
    return storage


async def worker(h: Harness, name: str = "w-0", queues: Sequence[str] | None = None) -> Broker:
    """A consumer started as a worker process starts it: worker id == consumer name."""
    broker = copy.copy(h.broker)
    await broker.start(name, name, list(queues or h.queues), h.storage)
    h._consumers.append(broker)
    return broker


def at(created_at: float, name: str = "add", **kw: Any) -> Envelope:
    """A fresh call created at ``created_at`` (for order and time-bound tests)."""
    return msgspec.structs.replace(envelope(name, **kw), created_at=created_at)


def failure(d: Delivery, tb: str = TB, child: str = "") -> Outcome:
    return (d, "error", b"\xc0", tb, child)


def uuids(tasks: Sequence[TaskSummary]) -> list[str]:
    return [t.uuid for t in tasks]


async def run_one(h: Harness, broker: Broker, name: str = "add", *, queue: str = "default", status: str = "success",
                  tb: str = TB) -> str:
    """Enqueue, fetch and settle one task as ``status``; its uuid."""
    e = envelope(name, queue=queue)
    await broker.enqueue([e], h.storage)
    ready, _ = await fetch(broker)
    assert [d.envelope.uuid for d in ready if d.envelope] == [e.uuid]
    outcome = success(ready[0], 1) if status == "success" else (ready[0], status, b"\xc0", tb, "")
    await broker.settle([outcome], h.storage, [])
    return e.uuid


async def every_status(h: Harness) -> dict[str, str]:
    """One task in each status (and a dead-lettered one): ``{label: uuid}``; no ``cancel`` one when the broker
    does not declare :class:`Cancel` (the query side is checked on what the backend can make)."""
    b = await worker(h, "w-0")
    out = {"success": await run_one(h, b), "error": await run_one(h, b, "boom", status="error")}
    dead = envelope("boom")
    await b.enqueue([dead], h.storage)
    ready, _ = await fetch(b)
    await b.dead_letter([(ready[0], "poison pill")], h.storage)
    out["dead"] = dead.uuid
    if isinstance(b, Cancel):
        cancelled = envelope()
        await b.enqueue([cancelled], h.storage)
        assert await b.cancel(cancelled.uuid, "default", "not needed", h.storage) == "queued"
        out["cancel"] = cancelled.uuid
    running = envelope()
    await b.enqueue([running], h.storage)
    ready, _ = await fetch(b)
    assert [d.envelope.uuid for d in ready if d.envelope] == [running.uuid]
    out["process"] = running.uuid
    new = envelope()
    await b.enqueue([new], h.storage)
    out["new"] = new.uuid
    return out


class QueryContract(ContractBase):
    """The query side every built-in backend implements with the same semantics."""

    # ------------------------------------------------------------------ lists
    @pytest.mark.asyncio
    async def test_lists_every_status(self, harness: Harness) -> None:
        """A task is listed from enqueue, while it runs (with its worker) and once finished; a dead letter is
        ``error`` with the reason, a task cancelled while queued is ``cancel``."""
        q = queries(harness)
        made = await every_status(harness)
        page = await q.list_tasks(["default"], TaskFilter())
        by_uuid = {t.uuid: t for t in page.tasks}
        assert set(by_uuid) == set(made.values()) and page.cursor is None
        for label, status in (("success", "success"), ("error", "error"), ("dead", "error"),
                              ("cancel", "cancel"), ("process", "process"), ("new", "new")):
            assert label not in made or by_uuid[made[label]].status == status, label
        assert by_uuid[made["process"]].worker_id == "w-0"
        assert by_uuid[made["success"]].worker_id == "w-0"
        assert by_uuid[made["error"]].error == "ValueError: Bad Input"
        dead = await harness.storage.get(made["dead"], ["default"])
        assert dead is not None and (dead.traceback or "").startswith("dead-lettered: poison pill")
        assert by_uuid[made["new"]].started_at is None and by_uuid[made["new"]].finished_at is None
        assert by_uuid[made["process"]].started_at is not None and by_uuid[made["process"]].finished_at is None
        assert by_uuid[made["success"]].finished_at is not None
        for label in ("success", "error"):
            assert by_uuid[made[label]].task_name == ("add" if label == "success" else "boom")
            assert by_uuid[made[label]].queue == "default"

    @pytest.mark.asyncio
    async def test_order_newest_first_ties_by_uuid(self, harness: Harness) -> None:
        """Newest first by the envelope's created_at; equal times by uuid, descending."""
        q, b = queries(harness), harness.broker
        base = round(time.time()) - 100.0
        envs = [at(base + 1), at(base), at(base + 2),
                at(base + 1), at(base + 1)]
        await b.enqueue(envs, harness.storage)
        want = [e.uuid for e in sorted(envs, key=lambda e: (e.created_at, e.uuid), reverse=True)]
        page = await q.list_tasks(["default"], TaskFilter())
        assert uuids(page.tasks) == want
        assert [t.created_at for t in page.tasks] == pytest.approx([base + 2, base + 1, base + 1, base + 1, base],
                                                                   abs=SLACK)

    @pytest.mark.asyncio
    async def test_pagination_cursor_is_stable_under_new_tasks(self, harness: Harness) -> None:
        """Pages follow each other without gaps or repeats; tasks enqueued after page 1 was read never show
        on page 2 nor shift it; the last page has no cursor."""
        q, b = queries(harness), harness.broker
        base = round(time.time()) - 50.0
        envs = [at(base + i) for i in range(7)]
        await b.enqueue(envs, harness.storage)
        want = [e.uuid for e in reversed(envs)]
        p1 = await q.list_tasks(["default"], TaskFilter(), limit=3)
        assert uuids(p1.tasks) == want[:3] and p1.cursor is not None
        await b.enqueue([envelope() for _ in range(4)], harness.storage)  # newer than all of them
        p2 = await q.list_tasks(["default"], TaskFilter(), limit=3, cursor=p1.cursor)
        assert uuids(p2.tasks) == want[3:6] and p2.cursor is not None
        p3 = await q.list_tasks(["default"], TaskFilter(), limit=3, cursor=p2.cursor)
        assert uuids(p3.tasks) == want[6:] and p3.cursor is None
        again = await q.list_tasks(["default"], TaskFilter(), limit=3, cursor=p1.cursor)
        assert uuids(again.tasks) == want[3:6]
        exact = await q.list_tasks(["default"], TaskFilter(), limit=11)
        assert len(exact.tasks) == 11 and exact.cursor is None

    @pytest.mark.asyncio
    async def test_pages_over_two_queues_and_a_filter(self, harness: Harness) -> None:
        """Pagination merges queues in one order and keeps a filter across pages."""
        q, b = queries(harness), harness.broker
        base = round(time.time()) - 50.0
        envs = [at(base + i, "add" if i % 3 else "boom", queue="a" if i % 2 else "b")
                for i in range(12)]
        await b.enqueue(envs, harness.storage)
        want = [e.uuid for e in reversed(envs) if e.task_name == "add"]
        got: list[str] = []
        cursor = None
        while True:
            page = await q.list_tasks(["a", "b"], TaskFilter(task_name="add"), limit=3, cursor=cursor)
            got += uuids(page.tasks)
            if page.cursor is None:
                break
            cursor = page.cursor
        assert got == want

    # ---------------------------------------------------------------- filters
    @pytest.mark.asyncio
    async def test_each_filter_alone(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        a0, a1, web7 = await worker(h, "a-0"), await worker(h, "a-1"), await worker(h, "web-7")
        before = time.time() - SLACK
        s_add = await run_one(h, a0)
        s_boom = await run_one(h, a1, "boom", status="error", tb="Traceback\nKeyError: 'Missing Row'")
        s_web = await run_one(h, web7, status="error")
        o_queue = envelope(queue="other")
        await h.broker.enqueue([o_queue], h.storage)
        after = time.time() + SLACK
        every = ["default", "other"]

        async def listed(f: TaskFilter) -> set[str]:
            return set(uuids((await q.list_tasks(every, f)).tasks))

        assert await listed(TaskFilter()) == {s_add, s_boom, s_web, o_queue.uuid}
        assert await listed(TaskFilter(task_name="boom")) == {s_boom}
        assert await listed(TaskFilter(task_name="nothing")) == set()
        assert await listed(TaskFilter(status="error")) == {s_boom, s_web}
        assert await listed(TaskFilter(status="new")) == {o_queue.uuid}
        assert await listed(TaskFilter(queue="other")) == {o_queue.uuid}
        assert set(uuids((await q.list_tasks(["default"], TaskFilter())).tasks)) == {s_add, s_boom, s_web}
        assert await listed(TaskFilter(worker_id="a-1")) == {s_boom}
        assert await listed(TaskFilter(worker_id="a")) == {s_add, s_boom}  # a bare id: every slot of it
        assert await listed(TaskFilter(worker_id="web")) == {s_web}
        assert await listed(TaskFilter(worker_id="we")) == set()  # not a prefix match
        assert await listed(TaskFilter(error_contains="missing row")) == {s_boom}
        assert await listed(TaskFilter(error_contains="BAD INPUT")) == {s_web}
        assert await listed(TaskFilter(created_after=before)) == {s_add, s_boom, s_web, o_queue.uuid}
        assert await listed(TaskFilter(created_after=after)) == set()
        assert await listed(TaskFilter(created_before=before)) == set()
        assert await listed(TaskFilter(finished_after=before)) == {s_add, s_boom, s_web}  # never unfinished
        assert await listed(TaskFilter(finished_before=after)) == {s_add, s_boom, s_web}
        assert await listed(TaskFilter(finished_after=after)) == set()

    @pytest.mark.asyncio
    async def test_time_bounds_are_half_open(self, harness: Harness) -> None:
        """``[created_after, created_before)``: a task created exactly at ``created_before`` is excluded."""
        q, b = queries(harness), harness.broker
        base = round(time.time()) - 30.0
        envs = [at(base + i) for i in range(4)]
        await b.enqueue(envs, harness.storage)
        page = await q.list_tasks(["default"], TaskFilter(created_after=base + 1, created_before=base + 3))
        assert uuids(page.tasks) == [envs[2].uuid, envs[1].uuid]

    @pytest.mark.asyncio
    async def test_filters_combine_with_and(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        b = await worker(h, "w-3")
        ok_add = await run_one(h, b)
        await run_one(h, b, "boom")
        err_add = await run_one(h, b, status="error")
        err_boom = await run_one(h, b, "boom", status="error", tb="Traceback\nOSError: disk")
        waiting = envelope()
        await h.broker.enqueue([waiting], h.storage)

        async def listed(f: TaskFilter) -> list[str]:
            return uuids((await q.list_tasks(["default"], f)).tasks)

        assert await listed(TaskFilter(task_name="add", status="error")) == [err_add]
        assert await listed(TaskFilter(task_name="add", status="success", worker_id="w")) == [ok_add]
        assert await listed(TaskFilter(task_name="add", status="success", worker_id="x")) == []
        assert await listed(TaskFilter(status="error", error_contains="oserror")) == [err_boom]
        assert await listed(TaskFilter(task_name="add", status="new", queue="default")) == [waiting.uuid]
        assert await listed(TaskFilter(task_name="add", queue="elsewhere")) == []

    # ----------------------------------------------------------------- counts
    @pytest.mark.asyncio
    async def test_counts_per_status(self, harness: Harness) -> None:
        """Every status is a key (0 included); the filter's own status is ignored, its other fields apply."""
        q, h = queries(harness), harness
        await run_one(h, await worker(h, "w-1"), "boom")
        made = await every_status(h)
        counts = await q.count_tasks(["default"], TaskFilter())
        assert counts == {"new": 1, "process": 1, "success": 2, "error": 2, "cancel": int("cancel" in made)}
        assert await q.count_tasks(["default"], TaskFilter(status="success")) == counts
        assert await q.count_tasks(["default"], TaskFilter(task_name="boom")) == dict.fromkeys(ALL, 0) | {
            "success": 1, "error": 2}
        assert await q.count_tasks(["default"], TaskFilter(worker_id="w-1")) == dict.fromkeys(ALL, 0) | {
            "success": 1}
        assert await q.count_tasks(["other"], TaskFilter()) == dict.fromkeys(ALL, 0)

    # ----------------------------------------------------------------- detail
    @pytest.mark.asyncio
    async def test_detail_timings_record_and_logs(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        b = await worker(h, "w-0")
        e = envelope(prio=3)
        await b.enqueue([e], h.storage)
        queued = await q.task_detail(e.uuid, ["default"])
        assert queued is not None and queued.started_at is None and queued.finished_at is None
        await asyncio.sleep(0.02)
        t1 = time.time()
        ready, _ = await fetch(b)
        t2 = time.time()
        await h.storage.append_logs(e.uuid, "default", ["one", "two"])
        await asyncio.sleep(0.02)
        t3 = time.time()
        await b.settle([success(ready[0], 5)], h.storage, [])
        t4 = time.time()
        d = await q.task_detail(e.uuid, ["default"])
        assert d is not None
        assert d.task == await h.storage.get(e.uuid, ["default"])
        assert d.task.status == "success" and d.task.returning == 5 and d.task.worker_id == "w-0"
        assert t1 - SLACK <= (d.started_at or 0) <= t2 + SLACK
        assert t3 - SLACK <= (d.finished_at or 0) <= t4 + SLACK
        assert d.task.created_at.timestamp() == pytest.approx(e.created_at, abs=SLACK)
        assert d.logs == ["one", "two"] and d.retry_chain == [e.uuid] and d.restarts == []
        summary = (await q.list_tasks(["default"], TaskFilter())).tasks[0]
        assert summary.priority == 3 and summary.deliveries == 1
        assert summary.started_at == pytest.approx(d.started_at) and summary.finished_at == pytest.approx(
            d.finished_at)
        assert await q.task_detail(str(_uuid.uuid4()), ["default"]) is None
        assert await q.task_detail(e.uuid, ["other"]) is None

    @pytest.mark.asyncio
    async def test_detail_retry_chain_and_restarts(self, harness: Harness) -> None:
        """retry_chain: every attempt, first first, from any of them; restarts: tasks restarting this one."""
        q, h = queries(harness), harness
        b = await worker(h, "w-0")
        first = envelope("boom", retry=2)
        await b.enqueue([first], h.storage)
        chain = [first.uuid]
        current = first
        for left in (1, 0):
            ready, _ = await fetch(b)
            child = envelope("boom", retry=left, parent=current.uuid)
            await b.settle([failure(ready[0], child=child.uuid)], h.storage, [child])
            chain.append(child.uuid)
            current = child
        ready, _ = await fetch(b)
        await b.settle([failure(ready[0])], h.storage, [])
        for u in chain:
            d = await q.task_detail(u, ["default"])
            assert d is not None and d.retry_chain == chain, u
        by_uuid = {t.uuid: t for t in (await q.list_tasks(["default"], TaskFilter())).tasks}
        assert by_uuid[chain[1]].retry_parent_uuid == chain[0] and by_uuid[chain[1]].retry_child_uuid == chain[2]
        r1 = at(time.time(), "boom", meta={META_RESTART_OF: first.uuid})
        await b.enqueue([r1], h.storage)
        r2 = at(time.time() + 0.01, "boom", meta={META_RESTART_OF: first.uuid})
        await b.enqueue([r2], h.storage)
        d = await q.task_detail(first.uuid, ["default"])
        assert d is not None and d.restarts == [r1.uuid, r2.uuid]
        by_uuid = {t.uuid: t for t in (await q.list_tasks(["default"], TaskFilter())).tasks}
        assert by_uuid[r2.uuid].restart_of == first.uuid

    # ----------------------------------------------------------------- events
    @pytest.mark.asyncio
    async def test_events_of_a_run_and_exact_resume(self, harness: Harness) -> None:
        """new -> process -> success, oldest first; resuming from any event's id returns exactly what followed."""
        q, h = queries(harness), harness
        b = await worker(h, "w-0")
        u1 = await run_one(h, b)
        u2 = await run_one(h, b, "boom", status="error")
        page = await q.events(["default"], None)
        evs = page.events
        assert [(e.uuid, e.status) for e in evs] == [(u1, "new"), (u1, "process"), (u1, "success"),
                                                    (u2, "new"), (u2, "process"), (u2, "error")]
        assert page.cursor == evs[-1].id
        assert evs[1].worker_id == "w-0" and evs[1].task_name == "add" and evs[1].queue == "default"
        assert all(a.at <= z.at + SLACK for a, z in zip(evs, evs[1:], strict=False))
        for i, ev in enumerate(evs):
            rest = await q.events(["default"], ev.id)
            assert rest.events == evs[i + 1:], i
        tail = await q.events(["default"], evs[-1].id)
        assert tail.events == [] and tail.cursor == evs[-1].id
        limited = await q.events(["default"], None, limit=4)
        assert limited.events == evs[:4] and limited.cursor == evs[3].id

    @pytest.mark.asyncio
    async def test_a_released_task_waits_again_as_new(self, harness: Harness) -> None:
        """A delivery handed back unrun (a draining worker's prefetched backlog) is ``new`` again, run by no
        one, and the feed says so; the next consumer's fetch makes it ``process`` under its name."""
        q, h = queries(harness), harness
        b = await worker(h, "w-0")
        e = envelope()
        await b.enqueue([e], h.storage)
        ready, _ = await fetch(b)
        await b.release(ready)
        listed = {t.uuid: t for t in (await q.list_tasks(["default"], TaskFilter())).tasks}[e.uuid]
        assert (listed.status, listed.worker_id) == ("new", None)
        assert (await q.count_tasks(["default"], TaskFilter()))["process"] == 0
        assert [ev.status for ev in (await q.events(["default"], None)).events] == ["new", "process", "new"]
        other = await worker(h, "v-0")
        await fetch(other)
        again = {t.uuid: t for t in (await q.list_tasks(["default"], TaskFilter())).tasks}[e.uuid]
        assert (again.status, again.worker_id) == ("process", "v-0")

    @pytest.mark.asyncio
    async def test_events_across_two_queues(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        b = await worker(h, "w-0", queues=["a", "b"])
        order = []
        for queue in ("a", "b", "a", "b"):
            e = envelope(queue=queue)
            await b.enqueue([e], h.storage)
            order.append((e.uuid, "new"))
        ready, _ = await fetch(b)
        for d in ready:
            await b.settle([success(d, 1)], h.storage, [])
        evs = (await q.events(["a", "b"], None)).events
        assert [(e.uuid, e.status) for e in evs[:4]] == order
        assert sorted((e.uuid, e.status) for e in evs[4:]) == sorted(
            [(u, "process") for u, _ in order] + [(u, "success") for u, _ in order])
        assert len({e.id for e in evs}) == len(evs) == 12
        for i, ev in enumerate(evs):
            assert (await q.events(["a", "b"], ev.id)).events == evs[i + 1:], i
        only_a = (await q.events(["a"], None)).events
        assert [e for e in evs if e.queue == "a"] == only_a
        # paging through both queues a few at a time loses nothing and repeats nothing
        got, cursor = [], None
        while True:
            page = await q.events(["a", "b"], cursor, limit=5)
            if not page.events:
                break
            got += page.events
            cursor = page.cursor
        assert got == evs

    @pytest.mark.asyncio
    async def test_events_dollar_and_block(self, harness: Harness) -> None:
        """``after="$"`` gives only what comes next; ``block`` wakes on the first new event."""
        q, h = queries(harness), harness
        await h.broker.enqueue([envelope()], h.storage)
        now = await q.events(["default"], "$")
        assert now.events == []
        later = envelope()
        await h.broker.enqueue([later], h.storage)
        nxt = await q.events(["default"], now.cursor)
        assert [(e.uuid, e.status) for e in nxt.events] == [(later.uuid, "new")]

        coming = envelope()

        async def produce() -> None:
            await asyncio.sleep(0.3)
            await h.broker.enqueue([coming], h.storage)

        t0 = time.monotonic()
        page, _ = await asyncio.gather(q.events(["default"], "$", block=10.0), produce())
        assert [(e.uuid, e.status) for e in page.events] == [(coming.uuid, "new")]
        assert 0.25 <= time.monotonic() - t0 < 5.0
        t0 = time.monotonic()
        assert (await q.events(["default"], page.cursor, block=0.2)).events == []
        assert 0.15 <= time.monotonic() - t0 < 5.0

    @pytest.mark.asyncio
    async def test_events_of_dead_letters_and_cancels(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        made = await every_status(h)
        last = {e.uuid: e.status for e in (await q.events(["default"], None)).events}
        assert last[made["dead"]] == "error" and ("cancel" not in made or last[made["cancel"]] == "cancel")
        assert last[made["process"]] == "process" and last[made["new"]] == "new"

    @pytest.mark.asyncio
    async def test_raw_events_are_the_events_as_json(self, harness: Harness) -> None:
        """``raw_events`` (what the SSE stream forwards without an event object each): the same events, ids and
        cursors as ``events``, each event's JSON byte for byte ``msgspec.json.encode`` of its ``TaskEvent``
        (so the frames a browser gets are what they were), odd names and workers escaped the same way."""
        q, h = queries(harness), harness
        odd = await worker(h, 'w"\\ü\t-0', queues=["a", "b"])
        u1 = await run_one(h, odd, queue="a")
        await run_one(h, odd, queue="b", status="error")
        await odd.enqueue([envelope('ad"d\\ é\n\x01</script>', queue="b"), envelope(queue="a")], h.storage)
        evs = (await q.events(["a", "b"], None)).events
        raw = await q.raw_events(["a", "b"], None)
        assert len(evs) == 8 and evs[1].uuid == u1 and evs[1].worker_id == 'w"\\ü\t-0'
        assert raw.ids == [e.id for e in evs] and raw.cursor == evs[-1].id
        assert raw.data == [msgspec.json.encode(e) for e in evs]
        assert [msgspec.json.decode(d, type=TaskEvent) for d in raw.data] == evs
        for i, ev in enumerate(evs):  # resuming from any id, a few at a time
            page = await q.raw_events(["a", "b"], ev.id, limit=3)
            assert page.ids == [e.id for e in evs[i + 1:i + 4]], i
            assert page.cursor == (evs[min(i + 3, len(evs) - 1)].id), i
        assert (await q.raw_events(["a"], None)).data == [msgspec.json.encode(e) for e in evs if e.queue == "a"]
        now = await q.raw_events(["a", "b"], "$")
        assert now.ids == [] and now.data == []
        later = envelope(queue="b")
        await odd.enqueue([later], h.storage)
        nxt = await q.raw_events(["a", "b"], now.cursor, block=5.0)
        assert [msgspec.json.decode(d, type=TaskEvent).uuid for d in nxt.data] == [later.uuid]
        assert nxt.ids == [e.id for e in (await q.events(["a", "b"], now.cursor)).events]

    # ------------------------------------------------------------- throughput
    @pytest.mark.asyncio
    async def test_throughput_per_minute(self, harness: Harness) -> None:
        q, h = queries(harness), harness
        b = await worker(h, "w-0")
        for status in ("success", "success", "error", "cancel"):
            await run_one(h, b, status=status)
        await b.enqueue([envelope()], h.storage)  # not finished: not counted
        points = await q.throughput(["default"], minutes=5)
        now_minute = int(time.time() // 60 * 60)
        assert len(points) == 5
        assert [p.minute for p in points] == [points[0].minute + 60 * i for i in range(5)]
        assert points[-1].minute in (now_minute, now_minute - 60)
        assert (sum(p.success for p in points), sum(p.error for p in points), sum(p.cancel for p in points)) == (
            2, 1, 1)
        quiet = await q.throughput(["other"], minutes=3)
        assert len(quiet) == 3 and all(p.success == p.error == p.cancel == 0 for p in quiet)

    # ------------------------------------------------------- broker side: depth
    @pytest.mark.asyncio
    async def test_queue_depth(self, harness: Harness) -> None:
        """Waiting per priority, in flight per consumer, delayed, dead."""
        h = harness
        with h.capability("queue statistics", "delayed delivery"):
            require(h.broker, QueueStatistics)  # a backend without it says so before the setup
            a, c = await worker(h, "a-0"), await worker(h, "c-0")
            await h.broker.enqueue([envelope(prio=0), envelope(prio=5)], h.storage)
            assert len((await fetch(a))[0]) == 2
            await h.broker.enqueue([envelope(prio=1)], h.storage)
            assert len((await fetch(c))[0]) == 1
            await h.broker.enqueue([envelope(prio=0), envelope(prio=4), envelope(prio=4)], h.storage)
            await h.broker.enqueue([envelope(eta=time.time() + 600)], h.storage)
            poison = envelope()
            await h.broker.enqueue([poison], h.storage)
            b = await worker(h, "d-0")
            ready, _ = await fetch(b, count=1)
            await b.dead_letter([(ready[0], "poison")], h.storage)
            depth = await require(h.broker, QueueStatistics).queue_depth("default")
            assert depth.queue == "default"
            assert depth.waiting_by_priority == {0: 1, 4: 2}
            assert depth.in_flight_by_worker == {"a-0": 2, "c-0": 1}
            assert depth.delayed == 1 and depth.dead == 1
            stats = await require(h.broker, QueueStatistics).queue_stats("default")
            assert stats.waiting == sum(depth.waiting_by_priority.values())
            assert stats.in_flight == sum(depth.in_flight_by_worker.values())
            empty = await require(h.broker, QueueStatistics).queue_depth("nothing")
            assert (empty.waiting_by_priority, empty.in_flight_by_worker, empty.delayed, empty.dead) == ({}, {}, 0, 0)

    # -------------------------------------------------- broker side: registry
    @pytest.mark.asyncio
    async def test_workers_lost_and_their_numbers(self, harness: Harness) -> None:
        """A registration carries done/failed/CPU/RSS back; a stopped heartbeat lists as lost only with
        ``include_lost``, and not at all past LOST_KEPT."""
        with harness.capability("worker registry"):
            b = require(harness.broker, WorkerRegistry)
            now = time.time()

            def info(wid: str, beat: float, pid: int) -> WorkerInfo:
                return WorkerInfo(id=wid, host="h1", pid=pid, processes=2, queues=["default"], concurrency=8,
                                  started=now - 100, heartbeat=beat, done=41, failed=2, cpu_percent=37.5, rss=123456789)

            live, lost = info("live-0", now, 10), info("lost-0", now - harness.broker.lease_seconds - 5, 11)
            gone = info("gone-0", now - LOST_KEPT - 60, 12)
            for w in (gone, lost, live):
                await b.register_worker(w)
            listed = await b.workers()
            assert [w.id for w in listed] == ["live-0"]
            got = listed[0]
            assert (got.done, got.failed, got.cpu_percent, got.rss, got.lost) == (41, 2, 37.5, 123456789, False)
            every = {w.id: w for w in await b.workers(include_lost=True)}
            assert set(every) == {"live-0", "lost-0"}
            assert every["lost-0"].lost and not every["live-0"].lost and every["lost-0"].done == 41
            await b.unregister_worker(live)
            assert {w.id for w in await b.workers(include_lost=True)} == {"lost-0"}  # a graceful stop is not lost
