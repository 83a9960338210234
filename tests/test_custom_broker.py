"""The Kafka-style example broker (examples/custom_broker.py) runs real tasks through a real worker.

It is a user's custom broker: only the abstract ``Broker`` methods, paired with
a separate ``InMemoryStorage`` (not fused), so these tests check that the
worker needs nothing else and that the contract's at-least-once promises hold.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import sys
import threading
import uuid as _uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.abc import NotSupported
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.testing import WorkerThread

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "custom_broker.py"


def _load_example() -> ModuleType:
    """Import the example by path, as a user would copy it (``examples`` is not on the test path)."""
    spec = importlib.util.spec_from_file_location("custom_broker", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = sys.modules["custom_broker"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


KafkaStyleBroker = _load_example().KafkaStyleBroker


def make_app(**broker_settings: float) -> tuple[QueueTasks, Any]:
    name = f"kafka{_uuid.uuid4().hex[:8]}"
    broker = KafkaStyleBroker(app_name=name, **broker_settings)
    app = QueueTasks(name, broker=broker, storage=InMemoryStorage(app_name=name),
                     config=GlobalConfig(drain_seconds=0.5))
    return app, broker


def test_results_and_errors_through_the_custom_broker() -> None:
    app, broker = make_app()

    @app.task
    def square(x: int) -> int:
        return x * x

    @app.task
    async def explode(why: str) -> None:
        raise ValueError(why)

    with WorkerThread(app):
        assert square.add_task(7, timeout=10).returning == 49  # type: ignore[union-attr]
        tasks = app.add_tasks([square.s(i) for i in range(100)])
        assert [app.wait(t.uuid, 10).returning for t in tasks] == [i * i for i in range(100)]  # type: ignore[union-attr]
        failed = explode.add_task("no fuel", timeout=10)
    assert failed is not None and failed.status == "error"
    assert "ValueError: no fuel" in (failed.traceback or "")
    # every record went through the plain Storage API, and every offset was committed
    topic = broker.topics["default"]
    assert sum(topic.committed) == sum(len(p) for p in topic.log) == 102 and not topic.leases


def test_a_task_interrupted_by_a_stopping_worker_runs_again_on_the_next() -> None:
    app, _ = make_app()
    started = threading.Event()
    runs: list[str] = []

    @app.task
    async def once_slow(x: int) -> int:
        runs.append("run")
        if len(runs) == 1:
            started.set()
            await asyncio.sleep(60)  # the first worker stops meanwhile: cancelled, handed back unacked
        return x + 1

    first = WorkerThread(app, worker_id="first")
    with first:
        task = once_slow.add_task(1)
        assert task is not None and started.wait(10)
    # `first` drained: the unfinished delivery went back to the log without an ack
    with WorkerThread(app, worker_id="second"):
        done = app.wait(task.uuid, 10)
    assert done is not None and done.status == "success" and done.returning == 2
    assert done.worker_id == "second-0" and len(runs) == 2


def test_a_delivery_of_a_vanished_consumer_is_redelivered_after_its_lease() -> None:
    app, broker = make_app(lease_seconds=0.5)

    @app.task
    def double(x: int) -> int:
        return 2 * x

    task = double.add_task(21)
    assert task is not None

    async def take_and_vanish() -> int:  # a worker that fetched, then died without ack or renewal
        ghost = copy.copy(broker)  # as each worker does: own consumer state, shared log
        await ghost.start("ghost-0", "ghost", ["default"], app.storage)
        return len(await ghost.fetch(1, 0))

    assert asyncio.run(take_and_vanish()) == 1
    with WorkerThread(app):
        done = app.wait(task.uuid, 10)
    assert done is not None and done.status == "success" and done.returning == 42
    topic = broker.topics["default"]
    assert sum(topic.committed) == 1 and not topic.leases


def test_optional_features_say_they_are_not_supported() -> None:
    app, broker = make_app()

    @app.task
    def noop() -> None:
        return None

    with pytest.raises(NotSupported, match="KafkaStyleBroker does not support delayed or unique enqueue"):
        noop.add_task(countdown=30)
    with pytest.raises(NotSupported, match="cancel"):
        asyncio.run(broker.cancel("x", "default", "", app.storage))
