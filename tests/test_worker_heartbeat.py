"""The worker registry's numbers (issue 12): each heartbeat carries the tasks a worker process finished
(done / failed: errors, cancels and dead letters), its CPU since the previous beat and its RSS, on every
built-in backend, and ``inspect`` shows them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from apps.testkit import wait_for

from qtasks_fast import QueueTasks, cli_control
from qtasks_fast.abc.broker import WorkerInfo
from qtasks_fast.cli import build_parser
from qtasks_fast.config import GlobalConfig
from qtasks_fast.schemas import Envelope
from qtasks_fast.testing import WorkerThread


def make_app(name: str, url: str) -> QueueTasks:
    app = QueueTasks(name, broker_url=url, config=GlobalConfig(lease_seconds=0.6))  # a beat every 0.2 s

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def bad() -> None:
        raise ValueError("no")

    @app.task
    def burn(seconds: float) -> int:
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            n += 1
        return n

    return app


def listed(app: QueueTasks) -> list[WorkerInfo]:
    async def go() -> list[WorkerInfo]:
        try:
            return await app.broker.workers()
        finally:
            await app.broker.close()

    return asyncio.run(go())


def test_heartbeat_carries_done_failed_cpu_and_rss(url: str, app_name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(app_name, url)

    async def ghost() -> None:  # a task no worker knows: dead-lettered by the worker, counted as failed
        try:
            await app.broker.enqueue([Envelope(uuid=str(uuid.uuid4()), task_name="ghost", created_at=time.time())],
                                     app.storage)
        finally:
            await app.broker.close()

    with WorkerThread(app, worker_id="hb"):
        for i in range(3):
            assert app.add_task("add", i, 1, timeout=10).returning == i + 1
        assert app.add_task("bad", timeout=10).status == "error"
        asyncio.run(ghost())

        def counted() -> WorkerInfo | None:
            ws = listed(app)
            return ws[0] if len(ws) == 1 and (ws[0].done, ws[0].failed) == (3, 2) else None

        w = wait_for(counted, 15, "a heartbeat with done=3, failed=2")
        assert w.rss > 10 * 2**20, w  # a Python process with the app loaded
        burning = app.add_task("burn", 3.0)

        def busy() -> WorkerInfo | None:
            ws = listed(app)
            return ws[0] if ws and ws[0].cpu_percent > 20 else None

        assert wait_for(busy, 15, "a heartbeat showing the CPU a running task burns", interval=0.1)
        assert app.wait(burning.uuid, timeout=15).status == "success"
        wait_for(lambda: listed(app)[0].done == 4, 15, "the next beat counting the burn")
        capsys.readouterr()
        args = build_parser().parse_args(["-A", "unused", "inspect", "--json"])
        assert cli_control.run(args, lambda _: app) == 0
        (shown,) = json.loads(capsys.readouterr().out)["workers"]
        assert (shown["done"], shown["failed"]) == (4, 2) and shown["rss"] > 0 and not shown["lost"]
        args = build_parser().parse_args(["-A", "unused", "inspect"])
        assert cli_control.run(args, lambda _: app) == 0
        table = capsys.readouterr().out
        assert "done" in table and "rss" in table and "MiB" in table

