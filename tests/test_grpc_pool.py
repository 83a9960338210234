"""The gRPC plugin's edges (issue 11): QTasks' plain ``SyncgRPCPlugin.start()/stop()``, and a pool of several
worker processes on one port: exactly one serves, the others stand by (one INFO line each, no error) and take
the port over when the serving one is gone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from qtasks_fast import QueueTasks
from qtasks_fast import asyncio as qasyncio
from qtasks_fast.plugins.grpc import AsyncgRPCPlugin, SyncgRPCPlugin, qtasks_pb2, qtasks_pb2_grpc
from qtasks_fast.plugins.grpc.server import port_free
from qtasks_fast.testing import WorkerThread
from tests.conftest import cli_env, free_port, start_cli, stop_cli

TOKEN = "pool-t0ken"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def add_task(target: str, timeout: float = 0.0, wait: float = 20.0) -> Any:
    """AddTask of ``add(2, 3)`` at ``target``, retried until a server answers there within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=2)
                return qtasks_pb2_grpc.QTasksServiceStub(channel).AddTask(
                    qtasks_pb2.AddTaskRequest(name="add", args_json="[2, 3]", timeout=timeout), metadata=AUTH,
                    timeout=timeout + 10)
        except (grpc.FutureTimeoutError, grpc.RpcError):
            if time.monotonic() > deadline:
                raise


def test_sync_plugin_start_and_stop_are_plain_calls(app_name: str) -> None:
    """QTasks code starts the sync plugin itself: ``plugin.start()`` serves at once, ``plugin.stop()`` frees."""
    app = QueueTasks(app_name, broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    plugin = SyncgRPCPlugin(app, port=free_port(), token=TOKEN)
    assert plugin.start() is None  # a plain call, not a coroutine left unawaited
    try:
        with WorkerThread(app):
            done = add_task(f"127.0.0.1:{plugin.port}", timeout=10)
        assert done.ok and json.loads(done.result_json) == 5
    finally:
        assert plugin.stop() is None
    assert port_free("127.0.0.1", plugin.port)


class PoolWorker:
    """What the plugin reads of the worker starting it: its id and the size of its pool."""

    def __init__(self, worker_id: str, processes: int) -> None:
        self.worker_id, self.processes = worker_id, processes


async def test_a_standby_takes_the_port_over(caplog: pytest.LogCaptureFixture, app_name: str) -> None:
    app = qasyncio.QueueTasks(app_name, broker_url="memory://")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    port = free_port()
    serving = AsyncgRPCPlugin(app, port=port, token=TOKEN)
    standby = AsyncgRPCPlugin(app, port=port, token=TOKEN)
    await serving.start(worker=PoolWorker("w-0", 2))
    try:
        with caplog.at_level(logging.INFO, logger="qtasks_fast"):
            await standby.start(worker=PoolWorker("w-1", 2))  # no error: a sibling serves the port
        said = [r for r in caplog.records if "stands by" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.INFO and "w-1" in said[0].getMessage()
        assert f"served by worker w-0 (pid {os.getpid()})" in said[0].getMessage()  # which process serves
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        await serving.stop()
        done = await asyncio.to_thread(add_task, f"127.0.0.1:{port}", 0.0, 20.0)  # the standby took it over
        assert done.ok and done.uuid
    finally:
        await serving.stop()
        await standby.stop()


APP_MODULE = '''
import os

from qtasks_fast import QueueTasks
from qtasks_fast.plugins import SyncgRPCPlugin

app = QueueTasks(os.environ["TEST_APP_NAME"])
app.add_plugin(SyncgRPCPlugin(app, port=int(os.environ["GRPC_PORT"]), token="{token}"))


@app.task
def add(a: int, b: int) -> int:
    return a + b
'''


def test_a_pool_of_two_processes_serves_the_port_once(tmp_path: Path, redis_url: str, app_name: str) -> None:
    (tmp_path / "grpc_pool_app.py").write_text(APP_MODULE.format(token=TOKEN))
    port = free_port()
    env = cli_env(redis_url, app_name, GRPC_PORT=str(port))
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    log = tmp_path / "pool.log"
    proc = start_cli(["-A", "grpc_pool_app:app", "run", "--processes", "2"], env, cwd=tmp_path, log=log)
    try:
        done = add_task(f"127.0.0.1:{port}", timeout=20, wait=60)
        assert done.ok and json.loads(done.result_json) == 5
        deadline = time.monotonic() + 20
        while "stands by" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop_cli(proc)
    text = log.read_text(errors="replace")
    assert text.count("gRPC QTasksService on") == 1, text
    assert text.count("stands by") == 1, text
    serving = re.search(r"served by worker (\S+) \(pid (\d+)\)$", text, re.M)
    assert serving, text  # the serving process says it serves, and the standby names that same one
    assert re.search(rf"is served by worker {re.escape(serving[1])} \(pid {serving[2]}\) of this pool; worker "
                     r"\S+ stands by", text), text
    assert "Traceback" not in text and "not started" not in text and "Failed to add port" not in text, text
