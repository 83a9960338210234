"""The worked port of a QTasks custom storage (examples/ported_storage.py, docs/from-qtasks.md) works as written.

What a user relies on: the port the porting guide walks through is a complete storage, paired with a broker it
is not fused with: the worker creates, marks, saves and waits through it; ``add_task(timeout=)`` returns the
final record (following a retried failure to its last attempt), a record is ``process`` while it runs, a
failure keeps its traceback, and the sync and async clients read it alike.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.backends.memory.broker import InMemoryBroker
from qtasks_fast.testing import WorkerThread

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ported_storage.py"


def example() -> Any:
    spec = importlib.util.spec_from_file_location("ported_storage", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = sys.modules["ported_storage"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(cls: Any) -> tuple[Any, Any, threading.Event]:
    name = f"port{uuid.uuid4().hex[:8]}"
    storage = example().DictStorage()
    app = cls(name, broker=InMemoryBroker(app_name=name), storage=storage)
    gate = threading.Event()
    tries: list[int] = []

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    def held() -> str:
        gate.wait(10)
        return "done"

    @app.task(retry=2, retry_on_exc=[ValueError])
    def flaky() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise ValueError(f"try {len(tries)}")
        return len(tries)

    @app.task
    def broken() -> None:
        raise RuntimeError("kaput")

    return app, storage, gate


def test_port_serves_the_sync_client() -> None:
    app, storage, gate = build(QueueTasks)
    assert not app.broker.fused(storage)  # the worker calls every method of the port
    with WorkerThread(app):
        assert app.add_task("add", 2, 3, timeout=10).returning == 5
        running = app.add_task("held")
        for _ in range(200):
            if app.get(running.uuid).status == "process":
                break
            time.sleep(0.01)
        assert app.get(running.uuid).status == "process"
        gate.set()
        assert app.wait(running.uuid, 10).returning == "done"
        retried = app.add_task("flaky", timeout=10)
        failed = app.add_task("broken", timeout=10)
    assert retried is not None and retried.status == "success" and retried.returning == 3
    assert failed is not None and failed.status == "error" and "kaput" in (failed.traceback or "")
    assert str(failed.uuid) in storage.records


def test_port_serves_the_async_client() -> None:
    app, _, gate = build(AsyncQueueTasks)
    gate.set()

    async def main() -> list[Any]:
        return [await app.add_task("add", 1, 1, timeout=10), await app.add_task("flaky", timeout=10)]

    with WorkerThread(app):
        done, retried = asyncio.run(main())
    assert done.returning == 2 and retried.returning == 3
