"""A worker's start-up waits out a broker outage (and stops at once on SIGTERM meanwhile), and a worker
serves under its consumer name only while no other owner holds it."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from qtasks_fast import GlobalConfig, QueueTasks
from qtasks_fast.testing import WorkerThread


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[list[str]]:
    """The messages the qtasks_fast loggers emit during the test."""
    handler, logger = _Lines(), logging.getLogger("qtasks_fast")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_worker_started_while_redis_is_down_serves_once_it_is_back(private_redis, lines: list[str]) -> None:
    app = QueueTasks("late", broker_url=private_redis.url)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    private_redis.stop()
    with WorkerThread(app, worker_id="late"):
        _until(lambda: any("worker late-0 cannot start: the broker is not available" in m for m in lines), 20,
               "the outage line")
        private_redis.start()
        assert add.add_task(1, 2, timeout=30).returning == 3  # type: ignore[union-attr]
    assert sum("until it recovers" in m for m in lines) == 1, "one line when the outage starts, not one per attempt"
    assert sum("recovered after" in m for m in lines) == 1


def test_sigterm_during_the_start_up_wait_stops_the_worker(lines: list[str]) -> None:
    from qtasks_fast.worker.worker import Worker

    app = QueueTasks("gone", broker_url=f"redis://127.0.0.1:{free_port()}/0")

    async def main() -> None:
        stop = asyncio.Event()
        run = asyncio.create_task(Worker(app, worker_id="gone").run(stop))
        deadline = time.monotonic() + 20
        while not any("cannot start" in m for m in lines):
            if run.done():
                run.result()  # it must not end by itself: raises what ended it
                pytest.fail("the worker stopped waiting for the broker")
            assert time.monotonic() < deadline, "no outage line"
            await asyncio.sleep(0.02)
        stop.set()  # what the SIGTERM handler does
        await asyncio.wait_for(run, 10)

    asyncio.run(main())
    assert any("worker gone-0 stopped before it started serving" in m for m in lines)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_a_consumer_name_has_one_owner_at_a_time(kind: str, tmp_path: Path, redis_url: str, app_name: str,
                                                 lines: list[str]) -> None:
    from qtasks_fast.worker.startup import NameLease

    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path}/q.db", "redis": redis_url}[kind]
    app = QueueTasks(app_name, broker_url=url)

    async def main() -> None:
        broker = app.broker
        stop = asyncio.Event()
        first = NameLease(broker, "W-0", "hostA:101:aa", 30, ["default", "b"])
        assert await first.acquire(stop)
        second = NameLease(broker, "W-0", "hostB:202:bb", 30, ["b"])
        waiting = asyncio.create_task(second.acquire(stop))
        while not any("held by owner hostA:101:aa on queue 'b'" in m for m in lines):
            assert not waiting.done(), "the second owner took a name that is held"
            await asyncio.sleep(0.02)
        await first.renew()  # the holder keeps it
        assert not waiting.done()
        await first.release()
        assert await asyncio.wait_for(waiting, 10) and second.held == ["b"]
        # a restarted worker of the same supervisor shares its owner token: it takes the name at once
        assert await asyncio.wait_for(NameLease(broker, "W-0", "hostB:202:bb", 30, ["b"]).acquire(stop), 5)
        other = NameLease(broker, "W-1", "hostA:101:aa", 30, ["b"])  # names are independent of each other
        assert await asyncio.wait_for(other.acquire(stop), 5)
        # a pool with the same worker id on other queues reads other streams: it does not wait
        elsewhere = NameLease(broker, "W-0", "hostC:303:cc", 30, ["c"])
        assert await asyncio.wait_for(elsewhere.acquire(stop), 5)
        for lease in (second, other, elsewhere):
            await lease.release()
        await broker.close()

    asyncio.run(main())
    assert sum("its consumer name is held by" in m for m in lines) == 1, "one line while it waits"
    assert any("consumer name released by owner hostA:101:aa" in m for m in lines)


def test_a_worker_whose_name_is_taken_over_exits_instead_of_running_its_tasks_twice() -> None:
    from qtasks_fast.worker.startup import ConsumerNameLost
    from qtasks_fast.worker.worker import Worker

    app = QueueTasks("taken", broker_url="memory://", config=GlobalConfig(lease_seconds=0.3))

    async def main() -> None:
        stop = asyncio.Event()
        w = Worker(app, worker_id="v", block_seconds=0.1)
        run = asyncio.create_task(w.run(stop))
        while w.name_lease is None or w.name_lease.held != ["default"]:
            assert not run.done()
            await asyncio.sleep(0.01)
        # what a frozen worker comes back to: its lease ran out and another owner took the name
        await w.broker.release_slot(w.name_lease.key, "default", w.owner)
        assert await w.broker.acquire(w.name_lease.key, "default", 1, "thief:1:x", 30)
        with pytest.raises(ConsumerNameLost, match="taken by owner thief:1:x"):
            await asyncio.wait_for(run, 10)

    asyncio.run(main())


def test_without_prctl_a_worker_stops_when_its_parent_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    from qtasks_fast.worker import runner

    monkeypatch.setattr(runner, "PARENT_POLL", 0.01)

    async def main() -> bool:
        stop = asyncio.Event()
        # started by a parent that is not our parent any more: we were re-parented
        await asyncio.wait_for(runner.watch_parent(os.getppid() + 1, stop), 5)
        return stop.is_set()

    assert asyncio.run(main())


@pytest.mark.parametrize("url_change", ["db", "password"])
def test_a_broker_that_refuses_the_url_ends_a_worker_for_good(url_change: str, redis_url: str, app_name: str) -> None:
    """A database number the server lacks or a wrong password is permanent (exit 78: the supervisor gives up and
    says why) — no restart or wait fixes a URL."""
    from qtasks_fast.worker.runner import EXIT_PERMANENT, exit_code

    base = redis_url.rsplit("/", 1)[0]
    url = base + "/99" if url_change == "db" else base.replace("redis://", "redis://nobody:wrong@") + "/0"
    app = QueueTasks(app_name, broker_url=url)

    async def ping() -> BaseException:
        try:
            await app.broker.ping()
        except Exception as exc:  # noqa: BLE001 - the error a worker's start-up sees
            return exc
        finally:
            await app.broker.close()
        raise AssertionError(f"{url} was accepted")

    assert exit_code(asyncio.run(ping())) == EXIT_PERMANENT
