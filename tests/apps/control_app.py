"""Test app of the task-control tests (tests/test_control_*.py, tests/test_periodic*.py).

Its name and broker come from the environment (TEST_APP_NAME, QTASKS_BROKER_URL). Side effects go to
Redis under ``ctl:<app>:...`` so a test can prove that a task ran, or never ran, in another process.
``CONTROL_PERIODIC=1`` adds a task scheduled every second that counts its runs per uuid.
"""

import asyncio
import os
import signal

import redis

from qtasks_fast import QueueTasks

app = QueueTasks(os.environ.get("TEST_APP_NAME", "control"), broker_url=os.environ.get("QTASKS_BROKER_URL"))
_url = os.environ.get("QTASKS_BROKER_URL") or ""
r = redis.Redis.from_url(_url if _url.startswith("redis") else "redis://127.0.0.1:6379/0")  # side effects


def key(*parts: str) -> str:
    return ":".join(["ctl", app.name, *parts])


@app.task
def touch(tag: str) -> str:
    """Count a run of ``tag``: a cancelled or purged call must leave its counter at 0."""
    r.incr(key("ran", tag))
    return tag


@app.task
def add(a: int, b: int) -> int:
    return a + b


@app.task
def fail(message: str) -> None:
    """Fails with ``ValueError(message)``: an error record on demand."""
    raise ValueError(message)


@app.task
async def sleeper(seconds: float) -> str:
    r.set(key("started"), "1")
    await asyncio.sleep(seconds)
    r.incr(key("slept"))
    return "woke"


@app.task(executor="inline")
def crash_if_flag(tag: str) -> str:
    """Kills its worker process while ``ctl:<app>:crash`` is set: a dead letter on demand, runnable later."""
    if r.get(key("crash")):
        os.kill(os.getpid(), signal.SIGKILL)
    r.incr(key("ran", tag))
    return tag


if os.environ.get("CONTROL_PERIODIC"):

    @app.periodic(every=1, echo=True)
    def beat(self) -> None:  # type: ignore[no-untyped-def]
        """Count this run under its uuid; the supervisors' logs say which tick each uuid belongs to."""
        r.hincrby(key("beats"), str(self.ctx.task_uuid), 1)
