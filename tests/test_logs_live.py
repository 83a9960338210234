"""Live tail of a running task's log lines (issue 13): with LogCapture, what a task has logged is readable
through ``app.get_logs`` and ``GET /api/v1/tasks/{uuid}/logs`` while its status is still ``process``, on every
backend, for thread and async tasks; lines keep their order; writes come in batches, a task that logs
nothing writes nothing, and a write that fails while the task runs loses no line."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from apps.web_app import build
from apps.webkit import client

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread

#: holds the running tasks until the test has seen their first line
GATE = threading.Event()


def held_app(name: str, url: str) -> QueueTasks:
    app = build(name, url)
    lg = logging.getLogger("tail")

    @app.task
    def held_thread() -> str:
        lg.warning("before the gate")
        GATE.wait(30)
        lg.warning("after the gate")
        return "done"

    @app.task
    async def held_async() -> str:
        lg.warning("before the gate")
        await asyncio.to_thread(GATE.wait, 30)
        lg.warning("after the gate")
        return "done"

    return app


def tail(lines: Sequence[str]) -> list[str]:
    """The messages of captured lines."""
    return [line.rsplit(": ", 1)[1] for line in lines]


@pytest.mark.parametrize("kind", ["thread", "async"])
async def test_a_running_task_s_lines_are_readable_while_it_runs(url: str, app_name: str, kind: str) -> None:
    app = held_app(app_name, url)
    GATE.clear()
    try:
        with WorkerThread(app, worker_id="tailw"):
            async with client(app) as c:
                uid = (await c.post("/api/v1/tasks", json={"name": f"held_{kind}"})).json()["uuid"]
                deadline = time.monotonic() + 15
                while not (await c.get(f"/api/v1/tasks/{uid}/logs")).json() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert tail((await c.get(f"/api/v1/tasks/{uid}/logs")).json()) == ["before the gate"]
                assert tail(app.get_logs(uid)) == ["before the gate"]
                assert (await c.get(f"/api/v1/tasks/{uid}")).json()["status"] == "process"
                GATE.set()
                done = (await c.get(f"/api/v1/tasks/{uid}", params={"wait": 20})).json()
                assert done["status"] == "success", done
                assert tail(app.get_logs(uid)) == ["before the gate", "after the gate"]
    finally:
        GATE.set()
        app.close()  # the shared PostgreSQL has few connections to spare


def test_lines_are_written_in_batches_and_a_silent_task_writes_nothing(app_name: str) -> None:
    app = build(app_name, "memory://")
    writes: list[int] = []
    real = app.storage.append_logs

    async def counting(uuid: str, queue: str, lines: Sequence[str]) -> Any:
        writes.append(len(lines))
        return await real(uuid, queue, lines)

    app.storage.append_logs = counting  # type: ignore[method-assign]

    @app.task
    def loud(n: int) -> int:
        for i in range(n):
            logging.getLogger("loud").warning("line %d", i)
        return n

    with WorkerThread(app):
        quiet = app.add_task("sleeper", 0, timeout=10)
        assert quiet is not None and quiet.status == "success" and writes == []
        rec = app.add_task("loud", 90, timeout=10)
    assert rec is not None and rec.status == "success"
    assert tail(app.get_logs(rec.uuid)) == [f"line {i}" for i in range(90)]
    assert sum(writes) == 90 and len(writes) <= 4, writes  # 50 at once, the rest with the run's end


def test_a_failed_write_while_it_runs_keeps_its_lines_for_the_end_and_the_task_succeeds(app_name: str) -> None:
    app = held_app(app_name, "memory://")
    attempts: list[list[str]] = []
    real = app.storage.append_logs

    async def failing_once(uuid: str, queue: str, lines: Sequence[str]) -> Any:
        attempts.append(list(lines))
        if len(attempts) == 1:
            raise ConnectionError("broker gone for a moment")
        return await real(uuid, queue, lines)

    app.storage.append_logs = failing_once  # type: ignore[method-assign]
    GATE.clear()
    try:
        with WorkerThread(app):
            task = app.add_task("held_thread")
            assert task is not None
            deadline = time.monotonic() + 15
            while not attempts and time.monotonic() < deadline:
                time.sleep(0.05)
            assert tail(attempts[0]) == ["before the gate"]
            GATE.set()
            done = app.wait(task.uuid, 20)
    finally:
        GATE.set()
    assert done is not None and done.status == "success"
    assert tail(app.get_logs(task.uuid)) == ["before the gate", "after the gate"]
