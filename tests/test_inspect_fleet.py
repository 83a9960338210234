"""``qtasks-fast inspect`` shows what the fleet is doing: per queue how many messages wait, are held by
workers, are delayed and dead-lettered, and which workers are live — on every built-in backend — and
still answers, with a note, when the broker cannot say.

The CLI's inspect command is run in this process (``cli_control.run`` with the test's app, the way
``qtasks-fast -A ... inspect --json`` runs it), so the memory backend is inspected too.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
import warnings
from typing import Any

import pytest
from apps.control_helpers import cli, cli_json
from apps.testkit import wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    from qtasks_fast import _corelib as core

from qtasks_fast import QueueTasks, cli_control
from qtasks_fast.cli import build_parser
from qtasks_fast.config import GlobalConfig
from qtasks_fast.testing import WorkerThread


def make_app(name: str, url: str, **config: Any) -> QueueTasks:
    app = QueueTasks(name, broker_url=url, config=GlobalConfig(**config))

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    @app.task
    async def fetch(url: str) -> int:
        return len(url)

    return app


def inspect_json(app: QueueTasks, capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    """``qtasks-fast -A <app> inspect --json`` on ``app``: the document printed and what went to stderr."""
    capsys.readouterr()
    args = build_parser().parse_args(["-A", "unused", "inspect", "--json"])
    assert cli_control.run(args, lambda _: app) == 0
    out, err = capsys.readouterr()
    return json.loads(out), err


def test_queue_counts_match_a_known_state(url: str, app_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(app_name, url)
    held = [app.add_task("add", i, 1) for i in range(4)]  # 2 go to the dead letters, 2 stay in flight
    fetched: list[Any] = []

    async def take_four() -> None:
        worker = copy.copy(app.broker)
        await worker.start("inspector-0", "inspector-0", ["default"], app.storage)
        ready: list[Any] = []
        for queue, flat in await worker.fetch(4, 0):
            core.decode_batch(queue, flat, {"add": app.tasks["add"]}, 1 << 20, ready, [])
        fetched.extend(ready)
        await worker.dead_letter([(d, "test: poison") for d in ready[:2]], app.storage)

    asyncio.run(take_four())
    assert sorted(d.envelope.uuid for d in fetched) == sorted(str(t.uuid) for t in held)
    waiting = [app.add_task("add", i, 2) for i in range(6)]
    for i in range(3):
        app.add_task("add", i, 3, countdown=3600)

    data, _ = inspect_json(app, capsys)
    assert data["queue_stats"] == {"default": {"waiting": 6, "in_flight": 2, "delayed": 3, "dead": 2}}, data
    # a cancelled queued task leaves the count at once (on Redis: a deleted entry ahead of the readers)
    assert app.cancel(waiting[-1].uuid) == "queued"
    data, _ = inspect_json(app, capsys)
    assert data["queue_stats"]["default"] == {"waiting": 5, "in_flight": 2, "delayed": 3, "dead": 2}, data
    assert data["notes"] == [] and data["workers"] == []


def test_a_live_worker_is_listed_until_it_stops(url: str, app_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(app_name, url)
    with WorkerThread(app, worker_id="insp"):
        assert app.add_task("add", 1, 2, timeout=10).returning == 3  # serving, hence registered
        data, _ = inspect_json(app, capsys)
        (w,) = data["workers"]
        assert (w["id"], w["pid"], w["processes"], w["queues"]) == ("insp-0", os.getpid(), 1, ["default"]), w
        assert w["heartbeat_age"] < 5 and w["concurrency"] == app.config.concurrency
        assert data["queue_stats"]["default"]["waiting"] == 0
    data, _ = inspect_json(app, capsys)
    assert data["workers"] == [], "a worker that stopped gracefully is still listed"


def test_a_serving_worker_keeps_beating_and_stays_listed(url: str, app_name: str) -> None:
    """Beats come from the lease keeper while the worker serves: with a 1 s lease, it is still listed
    long after its first beat would have aged out."""
    app = make_app(app_name, url, lease_seconds=1.0)

    async def listed() -> list[Any]:
        try:
            return await app.broker.workers()
        finally:
            await app.broker.close()

    def beat_after_a_lease() -> bool:
        (w,) = asyncio.run(listed())
        return w.heartbeat - w.started > 1.5

    with WorkerThread(app, worker_id="beat"):
        assert app.add_task("add", 1, 2, timeout=10).returning == 3
        wait_for(beat_after_a_lease, 15, "a heartbeat more than a lease after the start")
    assert asyncio.run(listed()) == []


def test_a_worker_silent_for_a_lease_is_no_longer_live(url: str, app_name: str) -> None:
    """A SIGKILLed worker never unregisters: its entry ages out after lease_seconds without a heartbeat."""
    from qtasks_fast.abc.broker import WorkerInfo

    app = make_app(app_name, url)
    lease = app.broker.lease_seconds

    def info(pid: int, age: float) -> WorkerInfo:
        return WorkerInfo(id=f"k-{pid}", host="h", pid=pid, processes=2, queues=["default"], concurrency=8,
                          started=time.time() - 100, heartbeat=time.time() - age)

    async def scenario() -> list[str]:
        await app.broker.register_worker(info(1, lease + 1))
        await app.broker.register_worker(info(2, lease / 2))
        listed = [w.id for w in await app.broker.workers()]
        await app.broker.close()
        return listed

    assert asyncio.run(scenario()) == ["k-2"]


def test_inspect_shows_what_runs_each_task_and_the_prefetch_a_worker_applies(
        app_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    app = make_app(app_name, "memory://")
    data, _ = inspect_json(app, capsys)
    assert data["tasks"]["fetch"]["executor"] == "event loop"  # an async task: not a thread
    assert data["tasks"]["add"]["executor"] == "thread"
    concurrency = app.config.concurrency
    assert app.config.prefetch == -1 and data["config"]["prefetch"] == concurrency
    assert "follows concurrency" in data["config_notes"]["prefetch"]
    args = build_parser().parse_args(["-A", "unused", "inspect"])
    assert cli_control.run(args, lambda _: app) == 0
    table = capsys.readouterr().out
    assert f"{concurrency} (follows concurrency" in table and "event loop" in table, table


def test_inspect_still_answers_when_the_broker_cannot_say(app_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from test_custom_broker import KafkaStyleBroker

    from qtasks_fast.backends.memory.storage import InMemoryStorage

    app = QueueTasks(app_name, broker=KafkaStyleBroker(app_name=app_name), storage=InMemoryStorage())
    data, err = inspect_json(app, capsys)
    assert data["queue_stats"] is None and data["workers"] is None and "add" not in data["tasks"]
    assert len(data["notes"]) == 2 and all("does not support" in n for n in data["notes"]), data["notes"]
    assert "note: queue counts unknown: KafkaStyleBroker does not support queue statistics" in err, err


def test_inspect_of_an_unreachable_broker_shows_the_app_and_says_why(app_name: str) -> None:
    from conftest import free_port

    code, out, err = cli(f"redis://127.0.0.1:{free_port()}/0", app_name, "inspect", "--json")
    assert code == 0, (out, err)
    data = json.loads(out)
    assert data["queue_stats"] is None and data["workers"] is None and "touch" in data["tasks"]
    assert err.count("note: queue counts and live workers unknown: cannot reach Redis") == 1, err
    assert "Traceback" not in err


def test_a_pool_of_two_processes_lists_two_workers(harness: Any, redis_url: str, app_name: str) -> None:
    proc = harness.start(redis_url, processes=2, worker_id="pool", app="control_app")
    harness.wait_ready(proc, 2)
    workers = cli_json(redis_url, app_name, "inspect")["workers"]
    assert sorted(w["id"] for w in workers) == ["pool-0", "pool-1"], workers
    assert {w["pid"] for w in workers} == {p.pid for p in harness.children(proc)}
    assert all(w["processes"] == 2 for w in workers), workers
    proc.send_signal(15)
    assert proc.wait(40) == 0
    wait_for(lambda: cli_json(redis_url, app_name, "inspect")["workers"] == [], 10, "the stopped pool to leave")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])  # Redis: its lost workers come with its query side
def test_a_worker_whose_heartbeat_stopped_is_shown_as_lost_for_an_hour(
        kind: str, tmp_path: Any, app_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The worker registry's promise (issue 12): a SIGKILLed worker is not silently dropped from ``inspect``;
    it is listed apart as lost, with its last heartbeat and numbers, until LOST_KEPT has passed."""
    from qtasks_fast.abc.broker import LOST_KEPT, WorkerInfo

    app = make_app(app_name, "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/q.sqlite3")
    lease = app.broker.lease_seconds

    def info(wid: str, age: float) -> WorkerInfo:
        return WorkerInfo(id=wid, host="h", pid=7, processes=1, queues=["default"], concurrency=8,
                          started=time.time() - 7200, heartbeat=time.time() - age, done=12, failed=3)

    async def register() -> None:
        for w in (info("live-0", 0.0), info("killed-0", lease + 5), info("gone-0", LOST_KEPT + 60)):
            await app.broker.register_worker(w)
        await app.broker.close()

    asyncio.run(register())
    data, _ = inspect_json(app, capsys)
    assert [w["id"] for w in data["workers"]] == ["live-0"]
    assert [(w["id"], w["done"], w["failed"], w["lost"]) for w in data["lost_workers"]] == [("killed-0", 12, 3, True)]
    args = build_parser().parse_args(["-A", "unused", "inspect"])
    assert cli_control.run(args, lambda _: app) == 0
    table = capsys.readouterr().out
    assert "lost workers" in table and "killed-0" in table and "gone-0" not in table, table
