"""QTasks' ``app.flush_all()`` (issue 11, item 1): everything of the app goes, nothing of any other app does.

What a user relies on: after ``flush_all`` the app has no queued, delayed or finished task left and no published
task table, on every backend; an app whose name starts with this one's (``"a:b"`` next to ``"a"``) keeps all of
its data; and a flush while the app's workers run is refused with a line saying what to do, deleting nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.components.task_manager import PendingTask, TaskManager
from qtasks_fast.control import WorkersRunning
from qtasks_fast.portal import portal
from qtasks_fast.testing import WorkerThread


def make(app: Any) -> Any:
    @app.task(name="work")
    def work(n: int) -> int:
        return n

    @app.task(name="side", queue="other")
    def side(n: int) -> int:
        return -n

    return app


def filled(app: Any) -> dict[str, Any]:
    """One finished task (a worker ran it and stopped), two queued, one delayed; their uuids."""
    with WorkerThread(app):
        done = app.add_task("work", 1, timeout=10)
    assert done is not None and done.status == "success"
    return {"done": str(done.uuid), "queued": [str(app.add_task(t, 2).uuid) for t in ("work", "side")],
            "delayed": str(app.add_task("work", 3, countdown=3600).uuid)}


def counts(app: Any, queue: str) -> tuple[int, int]:
    stats = portal().run(app.broker.queue_stats(queue))
    return stats.waiting, stats.delayed


def redis_keys(url: str, app_name: str) -> set[bytes]:
    """On Redis, the keys starting ``qtf:{<app_name>`` but worker registries (live processes renew them) and the
    app's list of routed queues (kept by a flush: producers note a queue once)."""
    if not url.startswith("redis"):
        return set()
    r = redis.Redis.from_url(url)
    return {k for k in r.scan_iter(match=f"qtf:{{{app_name}*", count=1000)
            if not k.endswith((b":workers", f"qtf:{{{app_name}}}:queues".encode()))}


def test_flush_all_deletes_the_app_and_keeps_an_app_named_like_it(url: str, app_name: str) -> None:
    mine = make(QueueTasks(name=app_name, broker_url=url))
    other = make(QueueTasks(name=f"{app_name}:default", broker_url=url))  # its keys start like mine's queues'
    try:
        kept = filled(other)
        others_keys = redis_keys(url, app_name)  # every key of the other app (none of mine yet)
        gone = filled(mine)
        assert counts(mine, "default") == (1, 1) and counts(mine, "other") == (1, 0)
        mine.flush_all()
        assert redis_keys(url, app_name) == others_keys  # all of mine went, all of the other's stayed
        assert mine.get(gone["done"]) is None and all(mine.get(u) is None for u in gone["queued"])
        assert mine.get(gone["delayed"]) is None
        assert counts(mine, "default") == (0, 0) and counts(mine, "other") == (0, 0)
        assert portal().run(mine.broker.published_tasks()) == {}
        assert other.get(kept["done"]) is not None and other.get(kept["delayed"]) is not None
        assert counts(other, "default") == (1, 1) and counts(other, "other") == (1, 0)
        assert set(portal().run(other.broker.published_tasks())) == {"work", "side"}
        with WorkerThread(other):  # the untouched app still serves its queued work
            assert other.add_task("work", 5, timeout=10).returning == 5
    finally:
        mine.close()
        other.close()


def test_flush_all_is_refused_while_a_worker_runs(url: str, app_name: str) -> None:
    app = make(QueueTasks(name=app_name, broker_url=url))
    try:
        with WorkerThread(app):
            done = app.add_task("work", 7, timeout=10)
            with pytest.raises(WorkersRunning, match="stop them first") as refused:
                app.flush_all()
        assert "\n" not in str(refused.value)
        assert done is not None and app.get(done.uuid) is not None  # nothing was deleted
    finally:
        app.close()


def test_the_async_client_flushes_too(url: str, app_name: str) -> None:
    app = make(AsyncQueueTasks(name=app_name, broker_url=url))

    async def main() -> tuple[Any, Any]:
        queued = (await app.add_task("work", 1)).uuid
        before = await app.get(queued)
        await app.flush_all()
        return before, await app.get(queued)

    try:
        with WorkerThread(app):  # a worker has served the store (an SQLite producer is warned until one has)
            pass
        before, after = asyncio.run(main())
        assert before is not None and after is None
    finally:
        asyncio.run(app.close()) if asyncio.iscoroutinefunction(app.close) else app.close()


@pytest.fixture(params=["redis", "sqlite"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A backend two clients of one app share, as two processes do (``memory://`` is one client's own)."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path}/q.sqlite3"


class ToHeavy(TaskManager):
    """Routes every call to a queue no task names."""

    def mutate(self, task: PendingTask) -> PendingTask:
        task.queue = "heavy"
        return task


def test_flush_all_reaches_a_queue_a_task_manager_routed_to_in_another_client(shared_url: str, app_name: str) -> None:
    url = shared_url
    sender = make(QueueTasks(name=app_name, broker_url=url))
    sender.config.task_manager = ToHeavy()
    flusher = QueueTasks(name=app_name, broker_url=url)  # another process of the app: no manager, no tasks
    try:
        sent = sender.add_task("work", 1)
        assert sent is not None and counts(sender, "heavy") == (1, 0)
        flusher.flush_all()
        assert counts(sender, "heavy") == (0, 0) and sender.get(sent.uuid) is None
        assert redis_keys(url, app_name) == set()
        again = sender.add_task("work", 2)  # routed after a flush: still found by the next one
        assert again is not None
        flusher.flush_all()
        assert counts(sender, "heavy") == (0, 0) and sender.get(again.uuid) is None
    finally:
        sender.close()
        flusher.close()


def test_flush_all_reads_the_published_table_again(shared_url: str, app_name: str) -> None:
    url = shared_url
    client = QueueTasks(name=app_name, broker_url=url)  # a thin client: imports no task
    served = make(QueueTasks(name=app_name, broker_url=url))
    try:
        assert client.get(uuid.uuid4()) is None  # reads the table (empty: no worker yet) and keeps it a while
        gone = filled(served)  # a worker publishes "side" on queue "other" after that read
        client.flush_all()
        assert counts(served, "other") == (0, 0) and counts(served, "default") == (0, 0)
        assert all(served.get(u) is None for u in (gone["done"], gone["delayed"], *gone["queued"]))
        assert redis_keys(url, app_name) == set()
    finally:
        client.close()
        served.close()
