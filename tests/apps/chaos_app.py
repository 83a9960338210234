"""The app of the chaos tier (tests/chaos): each run of a task body leaves its tag in a file.

Name and broker come from the environment (``TEST_APP_NAME``, ``QTASKS_BROKER_URL``), like
mixed_app; ``CHAOS_RUNS_DIR`` is where each worker process appends ``<tag>\\n`` per run, so a test
counts runs (and duplicates) without asking the broker that is being broken.
"""

import asyncio
import os

from qtasks_fast import QueueTasks

app = QueueTasks(os.environ.get("TEST_APP_NAME", "chaos"), broker_url=os.environ.get("QTASKS_BROKER_URL"))


def _ran(tag: str) -> None:
    runs = os.environ.get("CHAOS_RUNS_DIR")
    if runs:
        with open(os.path.join(runs, f"{os.getpid()}.txt"), "a") as f:
            f.write(tag + "\n")


@app.task
async def work(tag: str, seconds: float = 0.0) -> str:
    """A task that does a little I/O (a sleep) and records that it ran."""
    if seconds:
        await asyncio.sleep(seconds)
    _ran(tag)
    return tag


@app.task
def work_sync(tag: str, seconds: float = 0.0) -> str:
    import time

    if seconds:
        time.sleep(seconds)
    _ran(tag)
    return tag
