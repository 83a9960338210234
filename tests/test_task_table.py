"""The published task table (issue 10, items 1 and 2): a client that has not imported a task sends it with
the options its ``@app.task(...)`` declares, finds it by uuid in any queue of the app, is refused a name no
table knows (with the closest one), and a caller waiting on a task a worker dead-letters is woken at once
with the reason, on every backend.

The "client" is a second app object with the same name and broker and no tasks (on ``memory://`` it shares
the worker app's in-process backend, the only way two app objects meet there).
"""

from __future__ import annotations

import threading

import pytest

from qtasks_fast import GlobalConfig, QueueTasks, TaskNotFound
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.portal import portal
from qtasks_fast.tasktable import TaskSpec, publish
from qtasks_fast.testing import WorkerThread


def worker_app(name: str, url: str, version: str | None = None, **config: object) -> QueueTasks:
    """The app the workers import: a flaky task with retries, an ``io`` task with a limit, a plain one."""
    app = QueueTasks(name, broker_url=url, version=version, config=GlobalConfig(**config))  # type: ignore[arg-type]
    attempts: list[int] = []
    lock = threading.Lock()

    @app.task(retry=3, retry_on_exc=[ConnectionError])
    def flaky(n: int) -> int:
        with lock:
            attempts.append(n)
            if len(attempts) < 3:
                raise ConnectionError(f"attempt {len(attempts)} fails")
        return n * 10

    @app.task(queue="io", max_time=7, priority=3)
    def fetch(url: str) -> int:
        return 200

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    return app


def client_of(app: QueueTasks, url: str, cls: type = QueueTasks) -> QueueTasks:
    """A producer of the same app that imported none of its tasks."""
    if url == "memory://":
        return cls(app.name, broker=app.broker, storage=app.storage)  # type: ignore[no-any-return]
    return cls(app.name, broker_url=url)  # type: ignore[no-any-return]


def published(app: QueueTasks) -> dict[str, TaskSpec]:
    return portal().run(app.broker.published_tasks())


def wait_published(app: QueueTasks, name: str) -> None:
    """WorkerThread returns before its worker has started (and published): wait for the entry."""
    import time

    deadline = time.monotonic() + 10
    while name not in published(app):
        assert time.monotonic() < deadline, "the worker never published its task table"
        time.sleep(0.02)


def test_by_name_call_keeps_the_declared_retries(url: str, app_name: str) -> None:
    app = worker_app(app_name, url)
    client = client_of(app, url)
    with WorkerThread(app):
        wait_published(app, "flaky")
        t = client.add_task("flaky", 4, timeout=30)
    assert t is not None and t.status == "success", t
    assert t.returning == 40  # the third attempt, two retries after the first failure


def test_by_name_call_goes_to_the_declared_queue_and_is_found_there(url: str, app_name: str) -> None:
    app = worker_app(app_name, url)
    client = client_of(app, url)
    with WorkerThread(app, queues=["io"]):  # a fleet started with -Q io
        wait_published(app, "fetch")
        t = client.add_task("fetch", "https://example.org", timeout=30)
        assert t is not None and t.status == "success" and t.returning == 200, t
        assert t.queue == "io" and t.priority == 3
        fresh = client_of(app, url)  # never sent anything: it must still find the record in queue io
        assert fresh.get(t.uuid) is not None and fresh.get(t.uuid).status == "success"  # type: ignore[union-attr]
        assert fresh.wait(t.uuid, timeout=5) is not None
        later = client.add_task("fetch", "https://example.org/2", countdown=600)
        assert later is not None and later.queue == "io"
        assert client_of(app, url).cancel(later.uuid, "not needed") == "queued"
        got = client_of(app, url).get(later.uuid)
        assert got is not None and got.status == "cancel"


def test_bulk_by_name_uses_the_published_options(url: str, app_name: str) -> None:
    app = worker_app(app_name, url)
    client = client_of(app, url)
    with WorkerThread(app, queues=["io"]):
        wait_published(app, "fetch")
        records = client.add_tasks(("fetch", [f"u{i}"], {}) for i in range(5))
        assert {(r.queue, r.priority) for r in records} == {("io", 3)}
        done = [client.wait(r.uuid, timeout=30) for r in records]
    assert all(d is not None and d.returning == 200 for d in done), done


async def test_async_client_by_name(url: str, app_name: str) -> None:
    app = worker_app(app_name, url)
    client = client_of(app, url, AsyncQueueTasks)
    with WorkerThread(app, queues=["io"]):
        wait_published(app, "fetch")
        t = await client.add_task("fetch", "https://example.org", timeout=30)
        assert t is not None and t.queue == "io" and t.returning == 200, t
        assert (await client_of(app, url, AsyncQueueTasks).get(t.uuid)) is not None
        with pytest.raises(TaskNotFound, match="did you mean 'fetch'"):
            await client.add_task("fetcj", "x")


def test_typo_is_refused_at_once_with_a_suggestion(url: str, app_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = worker_app(app_name, url)
    client = client_of(app, url)
    sent: list[object] = []
    monkeypatch.setattr(client, "send_sync", lambda envs, wait=False: sent.append(envs))
    with WorkerThread(app):
        wait_published(app, "flaky")
        with pytest.raises(TaskNotFound, match=r"no task 'flakey' in app .*did you mean 'flaky'\?"):
            client.add_task("flakey", 1, timeout=30)
        with pytest.raises(TaskNotFound, match="did you mean 'add'"):
            client.add_tasks([("add", [1, 2], {}), ("ad", [1, 2], {})])
    # a producer's own registry is a table too: its typo fails before any broker is asked
    with pytest.raises(TaskNotFound, match="did you mean 'fetch'"):
        app.add_task("fech", "u")
    assert sent == []


def test_no_table_anywhere_sends_as_before(url: str, app_name: str) -> None:
    client = QueueTasks(app_name, broker_url=url)  # no tasks, and no worker ever published
    t = client.add_task("anything", 1)
    assert t is not None and t.status == "new" and t.queue == "default"


def test_newest_version_wins_per_task_and_no_name_is_dropped(url: str, app_name: str) -> None:
    old = worker_app(app_name, url, version="1.9")
    new = QueueTasks(app_name, broker=old.broker, storage=old.storage, version="1.10")

    @new.task(queue="io2", retry=5)
    def fetch(url: str) -> int:
        return 201

    broker = old.broker
    portal().run(publish(old, broker, "w-old"))
    portal().run(publish(new, broker, "w-new"))
    portal().run(publish(old, broker, "w-old-restarted"))  # an old worker restarting mid-deploy
    table = published(old)
    assert (table["fetch"].queue, table["fetch"].retry, table["fetch"].version) == ("io2", 5, "1.10")
    assert {"flaky", "add"} <= table.keys()  # only the old version has them: kept, not dropped
    same = QueueTasks(app_name, broker=old.broker, storage=old.storage, version="1.10")

    @same.task(queue="io3")
    def fetch(url: str) -> int:  # noqa: F811 - the same version published again: the latest wins
        return 202

    portal().run(publish(same, broker, "w-same"))
    assert published(old)["fetch"].queue == "io3"
    unversioned = QueueTasks(app_name, broker=old.broker, storage=old.storage)

    @unversioned.task(queue="nowhere")
    def fetch(url: str) -> int:  # noqa: F811 - an unversioned app is older than any version
        return 0

    portal().run(publish(unversioned, broker, "w-unversioned"))
    assert published(old)["fetch"].queue == "io3"


@pytest.mark.timeout(60)
def test_waiting_caller_of_a_dead_lettered_task_is_woken_with_the_reason(url: str, app_name: str) -> None:
    app = worker_app(app_name, url, max_payload=2000)
    client = client_of(app, url)
    with WorkerThread(app):
        wait_published(app, "add")
        # a name a newer version published that this (older) worker does not run: dead-lettered
        portal().run(app.broker.publish_tasks({"ghost": TaskSpec(queue="default", version="2.0")}))
        t = client.add_task("ghost", timeout=600)  # returning at all before the test's 60 s limit is the proof
        assert t is not None and t.status == "error", t
        assert "dead-lettered: unknown task 'ghost'" in (t.traceback or ""), t.traceback
        # a call over the worker's max_payload (the client's own limit is larger): dead-lettered too
        t = client.add_task("add", "x" * 5000, 1, timeout=600)
        assert t is not None and t.status == "error", t
        assert "dead-lettered" in (t.traceback or "") and "max_payload" in (t.traceback or ""), t.traceback


def test_chain_and_group_by_name(url: str, app_name: str) -> None:
    from qtasks_fast import chain, group

    app = worker_app(app_name, url)
    client = client_of(app, url)
    with WorkerThread(app, queues=["io"]):
        wait_published(app, "fetch")
        res = chain(("fetch", ["u"], {}), app=client).add_task()
        first = client.wait(res.uuid, timeout=30)
        assert first is not None and first.queue == "io" and first.returning == 200, first
        results = group(("fetch", ["a"], {}), ("fetch", ["b"], {}), app=client).add_task().wait(30)
        assert [(r.queue, r.returning) for r in results if r is not None] == [("io", 200), ("io", 200)]
        with pytest.raises(TaskNotFound, match="did you mean 'fetch'"):
            group(("fetch", ["a"], {}), ("fetc", ["b"], {}), app=client).add_task()


@pytest.mark.timeout(60)
def test_waiting_caller_of_a_task_cancelled_while_queued_is_woken(url: str, app_name: str) -> None:
    from qtasks_fast.middleware import Middleware

    app = worker_app(app_name, url)
    client = client_of(app, url)
    sent: list[str] = []

    class Remember(Middleware):
        def before_enqueue(self, producer: object, envelope: object) -> object:
            sent.append(envelope.uuid)  # type: ignore[attr-defined]
            return envelope

    client.add_middleware(Remember)
    with WorkerThread(app):
        wait_published(app, "fetch")
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(client.add_task("fetch", "u", countdown=600, timeout=600)))
        waiter.start()
        import time

        deadline = time.monotonic() + 10
        while not sent or client_of(app, url).get(sent[0]) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client_of(app, url).cancel(sent[0], "changed my mind") == "queued"
        waiter.join(50)  # the test's own limit: the caller asked for 600 s
    assert not waiter.is_alive() and got and got[0] is not None, got
    assert got[0].status == "cancel" and got[0].traceback == "changed my mind"  # type: ignore[attr-defined]


def test_chain_refuses_an_unknown_name_in_any_step(url: str, app_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in a later step fails at ``add_task`` like one in the first, and nothing is sent (before, the
    first steps ran and the worker dead-lettered the step with the typo)."""
    from qtasks_fast import chain

    app = worker_app(app_name, url)
    client = client_of(app, url)
    sent: list[object] = []
    monkeypatch.setattr(client, "send_sync", lambda envs, wait=False: sent.append(envs))
    with WorkerThread(app):
        wait_published(app, "fetch")
        with pytest.raises(TaskNotFound, match="did you mean 'fetch'"):
            chain(("add", [1, 2], {}), ("fetc", [], {}), app=client).add_task()
        # the producer's own registry is a table too
        with pytest.raises(TaskNotFound, match="did you mean 'add'"):
            chain(app.tasks["fetch"].s("u"), ("ad", [1], {}), app=app).add_task()
    assert sent == []


async def test_async_chain_refuses_an_unknown_name_in_any_step(url: str, app_name: str) -> None:
    from qtasks_fast import chain

    app = worker_app(app_name, url)
    client = client_of(app, url, AsyncQueueTasks)
    with WorkerThread(app):
        wait_published(app, "fetch")
        with pytest.raises(TaskNotFound, match="did you mean 'fetch'"):
            await chain(("add", [1, 2], {}), ("fetc", [], {}), app=client).add_task()
    await client.close()
