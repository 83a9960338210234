"""A QTasks-style async app (``qtasks_fast.asyncio.QueueTasks``), run as ``python app_async.py`` by the compat
tests; the embedded default broker, shared with the test process that imports this module."""

import asyncio
import os

from qtasks_fast.asyncio import QueueTasks

app = QueueTasks(name="CompatAsync")
app.config.delete_finished_tasks = True


@app.task(name="test")
async def record_user(id: int) -> str:
    return f"user {id} recorded"


@app.task(name="error_task")
async def divide_by_zero() -> float:
    return 1 / 0


@app.task(name="greet")
async def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task(name="hold")
async def hold(path: str) -> str:
    """Finishes only once ``path`` exists: a task that is certainly not done within a short timeout."""
    while not os.path.exists(path):
        await asyncio.sleep(0.01)
    return "released"


if __name__ == "__main__":
    app.run_forever()
