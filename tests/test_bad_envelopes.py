"""Envelopes a worker must not trust, on every backend: each ends in a final state and the worker serves on.

A foreign producer (or an attacker with access to the broker) can write any envelope. The worker:

- ends a task as ``error`` when handling its failure raises (here: a non-integer retry-attempt meta),
  with that exception's text, and frees its slot (the worker below has one);
- ends a delivery as ``error`` when starting it raises, and keeps fetching;
- routes a retry child to the queue and level its parent was fetched from, so a priority 15 named in the
  envelope does not leave the retry ``new`` forever, and dead-letters an envelope naming a queue other
  than the one it was read from;
- dead-letters an envelope whose uuid is not a canonical UUID (it would become a key suffix);
- and a broker clamps a priority outside the served levels at enqueue.
"""

from __future__ import annotations

import time
import uuid as _uuid
from typing import Any

import msgspec
import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.backends.redis.control import queue_prefix
from qtasks_fast.schemas import Envelope, Task
from qtasks_fast.testing import WorkerThread
from qtasks_fast.worker.executor import Executor


@pytest.fixture
def app(url: str, app_name: str) -> QueueTasks:
    a = QueueTasks(app_name, broker_url=url)
    a.kind = url.split(":", 1)[0]  # type: ignore[attr-defined]  # redis, sqlite or memory
    runs: dict[str, int] = {}

    @a.task(retry=1)
    def flaky(key: str) -> str:
        """Fails its first run for ``key``, succeeds after."""
        runs[key] = runs.get(key, 0) + 1
        if runs[key] == 1:
            raise RuntimeError(f"first run of {key} fails")
        return key

    @a.task(retry=2)
    def boom() -> None:
        raise ValueError("the task's own error")

    @a.task
    def add(a: int, b: int) -> int:
        return a + b

    return a


def inject(app: QueueTasks, env: Envelope, prio: int = 0, queue: str = "default") -> None:
    """Write ``env`` straight into the queue, as a foreign producer would (no checks, no record)."""
    body = msgspec.msgpack.encode(env)
    if app.kind == "redis":  # type: ignore[attr-defined]
        client = app.storage.conn.sync  # type: ignore[attr-defined]
        client.xadd(f"{queue_prefix(app.name, queue)}:s:{prio}", {"u": env.uuid, "d": body})
    else:
        app.broker.enqueue_raw(queue, body, prio, env.uuid)  # type: ignore[attr-defined]


def envelope(name: str, *args: Any, **fields: Any) -> Envelope:
    return Envelope(uuid=str(_uuid.uuid4()), task_name=name, args=list(args), created_at=time.time(), **fields)


def final(app: QueueTasks, uuid: str, timeout: float = 30.0) -> Task:
    """The record of ``uuid`` once it is final (polled: an injected task has no record to wait on at first)."""
    deadline = time.monotonic() + timeout
    while True:
        task = app.get(uuid)
        if task is not None and task.finished:
            return task
        assert time.monotonic() < deadline, f"task {uuid} not final after {timeout}s: {task}"
        time.sleep(0.05)


def the_dead_letter(app: QueueTasks, timeout: float = 30.0) -> Any:
    """The one dead letter of the app's default queue, once there is one."""
    deadline = time.monotonic() + timeout
    while not (dead := app.dlq_list()):
        assert time.monotonic() < deadline, "nothing dead-lettered"
        time.sleep(0.05)
    (dl,) = dead
    return dl


def still_serves(app: QueueTasks) -> None:
    """A good task enqueued now runs (the worker has one slot: a leaked slot would block it)."""
    t = app.add_task("add", 2, 3)
    assert final(app, str(t.uuid)).returning == 5


@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "hooked"])
def test_a_failure_path_that_raises_ends_the_task_as_error_and_frees_its_slot(app: QueueTasks,
                                                                              hooked: bool) -> None:
    if hooked:  # an event handler puts every task on the hooked path (middlewares/hooked.py)
        app.events.on.task_error(lambda **kw: None)
    bad = envelope("boom", retry=2, meta={"at": "x"})  # a retry attempt number that is no number
    inject(app, bad)
    with WorkerThread(app, concurrency=1):
        task = final(app, bad.uuid)
        assert task.status == "error"
        assert "ValueError: the task's own error" in task.traceback, task.traceback
        assert "not retried" in task.traceback and "'at' (retry attempt number) must be a non-negative integer, " \
            "got 'x'" in task.traceback, task.traceback
        assert task.retry_child_uuid is None
        still_serves(app)


def test_an_exception_while_starting_a_delivery_ends_it_and_the_worker_goes_on(
        app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    submit = Executor.submit

    def broken_submit(self: Executor, d: Any) -> None:
        if d.envelope.args == [40, 2]:
            raise RuntimeError("cannot start this one")
        submit(self, d)

    monkeypatch.setattr(Executor, "submit", broken_submit)
    t = app.add_task("add", 40, 2)
    with WorkerThread(app, concurrency=1):
        task = final(app, str(t.uuid))
        assert task.status == "error" and "RuntimeError: cannot start this one" in task.traceback, task
        still_serves(app)


def retried(app: QueueTasks, parent: str) -> Task:
    first = final(app, parent)
    assert first.status == "error" and first.retry_child_uuid is not None, first
    return final(app, str(first.retry_child_uuid))


def test_a_retry_child_runs_where_its_parent_was_fetched(app: QueueTasks) -> None:
    """Priority 15 (levels are 0..9) in the envelope: the retry still runs, on the level it was read from."""
    bad = envelope("flaky", "k1", retry=1, priority=15)
    inject(app, bad, prio=9)
    with WorkerThread(app, concurrency=1):
        child = retried(app, bad.uuid)
        assert child.status == "success" and child.returning == "k1", child
        assert child.queue == "default"


def test_an_envelope_naming_another_queue_is_dead_lettered_with_a_reason(app: QueueTasks) -> None:
    """A queue nobody serves in the envelope of a message read from ``default``: its retries and record
    would go where no worker looks, so it is dead-lettered, naming both queues; the worker serves on."""
    bad = envelope("flaky", "k1", retry=1, queue="nowhere")
    inject(app, bad)
    with WorkerThread(app, concurrency=1):
        dl = the_dead_letter(app)
        assert "envelope names queue 'nowhere' but was read from queue 'default'" in dl.reason, dl.reason
        still_serves(app)


def test_a_priority_outside_the_levels_is_clamped_at_enqueue(app: QueueTasks) -> None:
    """An envelope handed to the broker with priority 15 is queued at the last level, not on a stream no
    worker reads."""
    env = envelope("add", 1, 2, priority=15)
    app.broker.enqueue_sync([env], app.storage)
    with WorkerThread(app, concurrency=1):
        assert final(app, env.uuid).returning == 3


@pytest.mark.parametrize("bad_uuid", ["../../x", "x" * 36, "00000000-0000-0000-0000-00000000000g",
                                      "00000000-0000-0000-0000-0000000000000"])
def test_a_malformed_uuid_is_dead_lettered_with_a_reason(app: QueueTasks, bad_uuid: str) -> None:
    bad = envelope("add", 1, 2)
    bad.uuid = bad_uuid
    inject(app, bad)
    with WorkerThread(app, concurrency=1):
        dl = the_dead_letter(app)
        assert "is not a canonical UUID" in dl.reason and repr(bad_uuid) in dl.reason, dl.reason
        still_serves(app)


def test_a_bad_envelope_reaching_an_idle_worker_is_dead_lettered_and_the_worker_serves_on(app: QueueTasks) -> None:
    """Read by the idle worker's blocking read (on Redis handed over as its bytes arrive, ``Broker.take``), not
    by the fetch at the worker's start: dead-lettered with its reason all the same, and the next task runs."""
    with WorkerThread(app, concurrency=1):
        still_serves(app)  # the worker now waits idle for the next message
        bad = envelope("add", 1, 2)
        bad.uuid = "../../x"
        inject(app, bad)
        dl = the_dead_letter(app)
        assert "is not a canonical UUID" in dl.reason, dl.reason
        still_serves(app)


def test_a_malformed_chain_fails_its_step_with_a_message_saying_what_the_field_must_hold(app: QueueTasks) -> None:
    bad = envelope("add", 1, 2, meta={"ch": 5})
    inject(app, bad)
    with WorkerThread(app, concurrency=1):
        task = final(app, bad.uuid)
        assert task.status == "error", task
        assert "envelope meta 'ch' (chain steps) must be a list of [task_name, args, kwargs], got 5" \
            in task.traceback, task.traceback
        still_serves(app)


def test_a_failure_settled_twice_enqueues_one_retry_child(app: QueueTasks, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker sends a settle again after an outage with the same retries; the first attempt may have
    enqueued them already (Redis: the child goes out, then the ack meets a full Redis). One child runs."""
    runs: list[str] = []

    @app.task(retry=3)
    def once_more(key: str) -> str:
        runs.append(key)
        if len(runs) == 1:
            raise RuntimeError("the first run fails")
        return key

    settle = type(app.broker).settle
    failed: list[bool] = []

    async def partial_settle(self: Any, outcomes: Any, storage: Any, retries: Any) -> None:
        if retries and not failed:  # the children are out, then the rest of the settle fails
            failed.append(True)
            await self.enqueue(retries, storage)
            raise ConnectionError("connection lost after the retry child was enqueued")
        await settle(self, outcomes, storage, retries)

    monkeypatch.setattr(type(app.broker), "settle", partial_settle)
    t = app.add_task("once_more", "k")
    with WorkerThread(app, concurrency=4):
        child = retried(app, str(t.uuid))
        assert child.status == "success" and child.returning == "k", child
        time.sleep(1.0)  # a second child, if any, would run now
    assert failed and runs == ["k", "k"], runs
