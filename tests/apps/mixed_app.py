"""Test app used by the process-level tests: its name and broker come from the environment."""

import asyncio
import os
import signal

from qtasks_fast import QueueTasks
from qtasks_fast.config import GlobalConfig

config = GlobalConfig()
app = QueueTasks(os.environ.get("TEST_APP_NAME", "mixed"), broker_url=os.environ.get("QTASKS_BROKER_URL"),
                 config=config)


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
async def amul(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a * b


@app.task(generate_handler=lambda v: v * 2)
def gen(n: int):
    yield from range(n)


@app.task
def fail(x: int) -> int:
    raise ValueError(f"failing on purpose with {x}")


@app.task(executor="inline")
def noop() -> None:
    return None


@app.task
async def slow(seconds: float, tag: str = "") -> str:
    await asyncio.sleep(seconds)
    return tag


@app.task
def slow_sync(seconds: float, tag: str = "") -> str:
    import time

    time.sleep(seconds)
    return tag


@app.task(executor="inline")
def suicide() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
