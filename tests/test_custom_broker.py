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
import time
import uuid as _uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.abc import (
    Broker,
    Cancel,
    DeadLetters,
    Delays,
    FlushAll,
    NotSupported,
    Purge,
    UniqueKeys,
    WorkerRegistry,
    declared,
)
from qtasks_fast.backends.memory.storage import InMemoryStorage
from qtasks_fast.config import GlobalConfig
from qtasks_fast.exceptions import ConfigError
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


#: what a user sees for each capability the example does not declare: (capability class, words of the message)
REFUSED = {
    "cancel": (Cancel, "cancel"),
    "delayed task": (Delays, "delayed delivery"),
    "unique key": (UniqueKeys, "unique keys"),
    "purge": (Purge, "purge"),
    "dlq list": (DeadLetters, "dead-letter management"),
    "dlq requeue": (DeadLetters, "dead-letter management"),
    "dlq purge": (DeadLetters, "dead-letter management"),
    "flush_all": (FlushAll, "flush_all"),
    "ping(server=True)": (WorkerRegistry, "the worker registry"),
}


@pytest.mark.parametrize("use", list(REFUSED))
def test_an_undeclared_capability_is_refused_naming_backend_capability_and_remedy(use: str) -> None:
    app, broker = make_app()

    @app.task
    def noop() -> None:
        return None

    calls = {
        "cancel": lambda: app.cancel(str(_uuid.uuid4())),
        "delayed task": lambda: noop.add_task(countdown=30),
        "unique key": lambda: noop.add_task(unique="once"),
        "purge": lambda: app.purge("default"),
        "dlq list": lambda: app.dlq_list(),
        "dlq requeue": lambda: app.dlq_requeue(),
        "dlq purge": lambda: app.dlq_purge(),
        "flush_all": lambda: app.flush_all(),
        "ping(server=True)": lambda: app.ping(),
    }
    capability, words = REFUSED[use]
    with pytest.raises(NotSupported) as caught:
        calls[use]()
    text = str(caught.value)
    assert text.startswith(f"KafkaStyleBroker does not support {words} "), text
    assert f"qtasks_fast.abc.capabilities.{capability.__name__}" in text, text
    assert "use a backend that has it (redis://, postgresql://, sqlite:// or memory://)" in text, text
    assert caught.value.backend == "KafkaStyleBroker" and caught.value.capability == capability.__name__
    # refused before anything was written: a delayed or unique call is not queued to run now
    assert sum(len(p) for t in broker.topics.values() for p in t.log) == 0


def test_a_concurrency_limit_without_fleet_wide_limits_fails_the_task_saying_why() -> None:
    app, _ = make_app()

    @app.task(concurrency_limit=1)
    def limited() -> int:
        return 1

    with WorkerThread(app):
        done = limited.add_task(timeout=10)
    assert done is not None and done.status == "error", done
    assert "KafkaStyleBroker does not support fleet-wide limits" in (done.traceback or ""), done.traceback


def test_periodic_ticks_without_schedule_claims_disable_the_schedule_with_the_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    from qtasks_fast.scheduler import Scheduler

    app, _ = make_app()

    @app.periodic(every=1)
    def tick() -> None:
        return None

    scheduler = Scheduler(app)
    with caplog.at_level("ERROR", "qtasks_fast"):
        fired = asyncio.run(scheduler.run_due(time.time() + 5))
    assert fired == 0 and not scheduler.entries
    assert "KafkaStyleBroker does not support schedule claims" in caplog.text, caplog.text


def test_a_scheduler_without_schedule_claims_says_so_when_it_starts_not_at_the_first_tick(
        caplog: pytest.LogCaptureFixture) -> None:
    """A daily schedule on a broker without Claims: the operator reads why it will never run when the fleet
    starts, and the scheduler does not announce it as scheduled."""
    from qtasks_fast.scheduler import Scheduler

    app, _ = make_app()

    @app.periodic(cron="0 3 * * *")
    def nightly() -> None:
        return None

    async def start_and_stop() -> None:
        stop = asyncio.Event()
        running = asyncio.ensure_future(Scheduler(app).run_forever(stop))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(running, 5)

    with caplog.at_level("INFO", "qtasks_fast"):
        asyncio.run(start_and_stop())
    assert "periodic nightly disabled: KafkaStyleBroker does not support schedule claims" in caplog.text
    assert "1 periodic task(s)" not in caplog.text, caplog.text


def test_the_core_contract_declares_every_hook_the_worker_calls() -> None:
    """The worker calls ``recover`` after a failed fetch and ``trim_indexes`` from the lease keeper: both are
    part of the core Broker with do-nothing defaults, so a broker implementing only the abstract methods has
    them (no ``getattr`` probing in the worker)."""
    _, broker = make_app()
    assert not declared(broker)
    broker.recover([])
    assert asyncio.run(broker.trim_indexes()) is None
    assert Broker.recover is type(broker).recover and Broker.trim_indexes is type(broker).trim_indexes


def test_a_worker_refuses_retry_backoff_on_a_broker_without_delays_before_running_anything() -> None:
    """A backoff retry is a delayed envelope: without ``Delays`` it would be refused at settle, after the task
    ran, crashing the worker at each retry. The worker says so at start instead, naming task and capability."""
    app, broker = make_app()

    @app.task(retry=2, retry_backoff=1)
    def flaky() -> None:
        raise ValueError("flaky")

    flaky.add_task()
    with pytest.raises(ConfigError, match=r"task\(s\) flaky retry with retry_backoff.*KafkaStyleBroker does not "
                                          r"support delayed delivery"):
        with WorkerThread(app):
            pass
    assert sum(broker.topics["default"].position) == 0  # nothing was fetched
