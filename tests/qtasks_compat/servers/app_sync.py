"""A QTasks-style sync app, run as a plain ``python app_sync.py`` process by the compat tests.

No broker given: the embedded default (SQLite next to this file), which the test process, importing
this module, shares.
"""

import os
import time

from qtasks_fast import QueueTasks

app = QueueTasks(name="CompatSync")
app.config.delete_finished_tasks = True


@app.task(name="test")
def record_user(id: int) -> str:
    return f"user {id} recorded"


@app.task(name="error_task")
def divide_by_zero() -> float:
    return 1 / 0


@app.task(name="greet")
def greet(name: str, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


@app.task(name="hold")
def hold(path: str) -> str:
    """Finishes only once ``path`` exists: a task that is certainly not done within a short timeout."""
    while not os.path.exists(path):
        time.sleep(0.01)
    return "released"


if __name__ == "__main__":
    app.run_forever()
