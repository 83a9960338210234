"""Results with ints wider than 64 bits (issue 11, review finding 5): QTasks stores results as JSON, where
``2**70`` is fine, so a ported task may return one. Here such a result is stored losslessly (a msgpack extension,
never pickle) and read back as the same int, on every backend's records; what still cannot be stored (a wide int as
a dict key) ends the task with a one-line error on its record, never a worker crash."""

from __future__ import annotations

import importlib
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from qtasks_fast import QueueTasks
from qtasks_fast.asyncio import QueueTasks as AsyncQueueTasks
from qtasks_fast.testing import WorkerThread

WIDE = 2**70


def build(app: Any) -> Any:
    @app.task
    def big() -> int:
        return WIDE

    @app.task
    def nested() -> Any:
        return {"n": [WIDE, -(2**80), 2**64 - 1, -(2**63), True, 1.5], "t": (WIDE, "x"), "small": 3}

    @app.task
    async def big_async() -> int:
        return -WIDE

    @app.task
    def wide_key() -> Any:
        return {WIDE: 1}

    return app


@pytest.mark.parametrize("url", ["memory://", "redis"])
def test_wide_int_results_are_stored_and_read_back_exactly(
    url: str, app_name: str, request: pytest.FixtureRequest
) -> None:
    broker_url = str(request.getfixturevalue("redis_url")) if url == "redis" else url
    app = build(QueueTasks(app_name, broker_url=broker_url))
    try:
        with WorkerThread(app):
            big = app.add_task("big", timeout=20)
            nested = app.add_task("nested", timeout=20)
            big_async = app.add_task("big_async", timeout=20)
            bad = app.add_task("wide_key", timeout=20)
        assert big is not None and big.status == "success" and big.returning == WIDE, big
        assert type(big.returning) is int
        assert nested is not None and nested.status == "success", nested
        assert nested.returning == {"n": [WIDE, -(2**80), 2**64 - 1, -(2**63), True, 1.5], "t": [WIDE, "x"], "small": 3}
        assert big_async is not None and big_async.returning == -WIDE, big_async
        got = app.get(big.uuid)  # a fresh read of the stored record
        assert got is not None and got.returning == WIDE
        assert bad is not None and bad.status == "error", bad
        assert "not serializable to msgpack" in bad.traceback and "ints" in bad.traceback
    finally:
        if url == "redis":
            app.flush_all()
        app.close()


async def test_wide_int_result_on_the_async_client(app_name: str) -> None:
    app = build(AsyncQueueTasks(app_name, broker_url="memory://"))
    with WorkerThread(app):
        task = await app.add_task("big", timeout=20)
    assert task is not None and task.status == "success" and task.returning == WIDE


PROCESS_MODULE = """
from qtasks_fast import QueueTasks

app = QueueTasks("{name}", broker_url="memory://")


@app.task(executor="process")
def big() -> list:
    return [2**70, -(2**90)]
"""


def test_wide_int_result_from_a_process_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child process sends the result to the worker in msgpack too: the wide int survives both hops."""
    name = f"bigint_proc_{uuid.uuid4().hex[:8]}"  # a module of the user's: the process child imports it by name
    (tmp_path / f"{name}.py").write_text(PROCESS_MODULE.format(name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        app = importlib.import_module(name).app
        with WorkerThread(app, broker_url="memory://"):
            rec = app.add_task("big", timeout=30)
        assert rec is not None and rec.status == "success" and rec.returning == [2**70, -(2**90)], rec
    finally:
        sys.modules.pop(name, None)
