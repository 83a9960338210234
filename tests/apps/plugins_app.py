"""Test app of tests/test_plugins.py and tests/test_metrics_logs.py: plugins on every component, Metrics, LogCapture.

Plugins leave traces in Redis lists under ``<app name>:`` keys, which is how the tests see from
outside what fired in the worker processes. ``QTF_METRICS_PORT`` (when set) serves Metrics there.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import redis
import redis.asyncio as aioredis

from qtasks_fast import BasePlugin, QueueTasks
from qtasks_fast.middlewares import LogCapture, Metrics

NAME = os.environ.get("TEST_APP_NAME", "plugins")
URL = os.environ.get("QTASKS_BROKER_URL", "redis://127.0.0.1:6379/0")
PORT = os.environ.get("QTF_METRICS_PORT")
app = QueueTasks(NAME, broker_url=URL)
work_log = logging.getLogger("plugins_app.work")
work_log.setLevel(logging.INFO)  # the root's WARNING would drop its info lines before any handler
_aio: dict[object, aioredis.Redis] = {}
_sync: list[redis.Redis] = []
#: what the producer-side plugin saw in this process (the test process)
enqueued: list[str] = []


def key(suffix: str) -> str:
    return f"{NAME}:{suffix}"


def rc() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    if loop not in _aio:
        _aio[loop] = aioredis.Redis.from_url(URL)
    return _aio[loop]


def sc() -> redis.Redis:
    if not _sync:
        _sync.append(redis.Redis.from_url(URL))
    return _sync[0]


# ----------------------------------------------------------------------------------- plugins
class WorkerTrace(BasePlugin):
    """Async trigger on every worker trigger; upper-cases the arguments of ``greet``."""

    async def start(self, **kwargs: Any) -> None:
        await rc().rpush(key("lifecycle"), f"start:{os.getpid()}")

    async def stop(self, **kwargs: Any) -> None:
        await rc().rpush(key("lifecycle"), f"stop:{os.getpid()}")

    async def trigger(self, name: str, **kw: Any) -> dict[str, Any] | None:
        if name in ("worker_start", "worker_stop"):
            await rc().rpush(key("lifecycle"), f"{name}:{os.getpid()}")
        elif name == "task_before_execute":
            await rc().rpush(key(f"trace:{kw['uuid']}"), f"before:{list(kw['args'])}")
            if kw["task_name"] == "greet":
                return {"args": [str(a).upper() for a in kw["args"]]}
        elif name == "task_after_execute":
            await rc().rpush(key(f"trace:{kw['uuid']}"), f"after:{kw['status']}:{kw['result']}")
        return None


class SecondSeesReplacement(BasePlugin):
    """A sync trigger after WorkerTrace on the same name: it gets the arguments WorkerTrace replaced."""

    def trigger(self, name: str, **kw: Any) -> None:
        sc().rpush(key(f"trace:{kw['uuid']}"), f"second:{list(kw['args'])}")


class BrokerStorageTrace(BasePlugin):
    def trigger(self, name: str, **kw: Any) -> None:
        if name == "storage_save":
            for d, status, *_ in kw["outcomes"]:
                sc().rpush(key(f"saved:{d.envelope.uuid}"), status)
        else:
            sc().rpush(key("lifecycle"), f"{name}:{type(kw['broker']).__name__}:{os.getpid()}")


class Stamp(BasePlugin):
    """Producer side: adds ``punct="!"`` to ``greet`` calls, and notes every enqueue."""

    def trigger(self, name: str, **kw: Any) -> dict[str, Any] | None:
        env = kw["envelope"]
        if name == "task_after_enqueue":
            enqueued.append(env.uuid)
        elif env.task_name == "greet":
            return {"kwargs": {**env.kwargs, "punct": "!"}}
        return None


app.add_plugin(WorkerTrace())  # component "worker", every trigger of it
app.add_plugin(SecondSeesReplacement(), trigger_names=["task_before_execute"])
app.add_plugin(BrokerStorageTrace(), component="broker")
app.add_plugin(BrokerStorageTrace(), trigger_names=["storage_save"], component="storage")
app.add_plugin(Stamp(), component="producer")
app.add_middleware(LogCapture, max_lines=20, max_bytes=4000)
if PORT:
    app.add_middleware(Metrics, port=int(PORT))


# ------------------------------------------------------------------------------------- tasks
@app.task
def greet(name: str, punct: str = "") -> str:
    return f"hi {name}{punct}"


@app.task
def chatty(n: int, fail: bool = False) -> int:
    """A sync task in a pool thread logging through the standard logging module."""
    for i in range(n):
        work_log.info("step %d of %d", i + 1, n)
    logging.warning("root warning from chatty(%d)", n)
    if fail:
        raise ValueError(f"chatty failed after {n} steps")
    return n


@app.task(echo=True)
async def interleaved(self: Any, tag: str, gate: str) -> str:
    """Logs, then waits until its twin logged too (a Redis list as the gate), then logs again: two of
    these run at once in one worker, so their lines interleave in time."""
    log = self.ctx.get_logger()
    log.info("%s first", tag)
    work_log.info("%s via stdlib", tag)
    await rc().rpush(key(gate), tag)
    for _ in range(500):
        if await rc().llen(key(gate)) >= 2:
            break
        await asyncio.sleep(0.01)
    log.info("%s last", tag)
    return tag


@app.task
async def ok(x: int) -> int:
    return x


@app.task(retry=1)
async def boom(x: int) -> int:
    raise RuntimeError(f"boom {x}")


@app.task
async def quiet() -> None:
    """Logs nothing: stores no log lines."""


@app.task
async def nap(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds
