"""A unique key is given back when its task is cancelled or fails for good, on every backend (issue 10, item 6).

What a user relies on: ``add_task(..., unique="k")`` sent again after the first call was cancelled or
failed runs the call again, instead of returning the dead record for up to ``unique_ttl``; a call that
succeeded or is still being retried keeps its key.
"""

from __future__ import annotations

import asyncio
import time
import uuid as _uuid

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread


def make_app(url: str) -> QueueTasks:
    app = QueueTasks(f"uq{_uuid.uuid4().hex[:10]}", broker_url=url)

    @app.task(name="hang")
    async def hang() -> None:
        await asyncio.sleep(60)

    @app.task(name="fail", retry=1)
    def fail(n: int) -> int:
        raise ValueError(f"bad {n}")

    @app.task(name="double")
    def double(n: int) -> int:
        return 2 * n

    return app


def wait_status(app: QueueTasks, uuid: _uuid.UUID, status: str) -> None:
    deadline = time.monotonic() + 10
    while (rec := app.get(uuid)) is None or rec.status != status:
        assert time.monotonic() < deadline, rec
        time.sleep(0.01)


def test_resending_a_cancelled_or_failed_unique_call_runs_it_again(url: str) -> None:
    app = make_app(url)
    with WorkerThread(app, concurrency=4):
        running = app.add_task("hang", unique="hang-1")
        wait_status(app, running.uuid, "process")
        assert app.add_task("hang", unique="hang-1").uuid == running.uuid  # held while it runs
        assert app.cancel(running.uuid, "stop it") == "running"
        assert (rec := app.wait(running.uuid, 10)) is not None and rec.status == "cancel", rec
        again = app.add_task("hang", unique="hang-1")
        assert again.uuid != running.uuid and app.cancel(again.uuid) in ("queued", "running")

        failed = app.add_task("fail", 1, unique="fail-1")
        final = app.wait(failed.uuid, 10)  # follows the retry to the final attempt
        assert final is not None and final.status == "error" and final.uuid != failed.uuid, final
        retried = app.add_task("fail", 1, unique="fail-1", timeout=10)
        assert retried is not None and retried.uuid not in (failed.uuid, final.uuid), retried

        done = app.add_task("double", 2, unique="double-2", timeout=10)
        assert done is not None and done.returning == 4
        assert app.add_task("double", 2, unique="double-2").uuid == done.uuid  # a success keeps its key
