"""The chaos app's ``work`` task plus ``die``, a poison task that kills its worker process on every run.

Name and broker come from the environment (``TEST_APP_NAME``, ``QTASKS_BROKER_URL``); ``CHAOS_RUNS_DIR``
is where each run of ``work`` leaves its tag (see chaos_app.py).
"""

import asyncio
import os

from qtasks_fast import QueueTasks

app = QueueTasks(os.environ.get("TEST_APP_NAME", "poison"), broker_url=os.environ.get("QTASKS_BROKER_URL"))


@app.task
async def work(tag: str, seconds: float = 0.0) -> str:
    if seconds:
        await asyncio.sleep(seconds)
    runs = os.environ.get("CHAOS_RUNS_DIR")
    if runs:
        with open(os.path.join(runs, f"{os.getpid()}.txt"), "a") as f:
            f.write(tag + "\n")
    return tag


@app.task(executor="inline")
def die() -> None:
    """Takes its worker process down, as a segfaulting extension or an OOM kill would."""
    os._exit(1)
