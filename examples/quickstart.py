"""Quickstart: a few tasks, two worker processes, no server needed (embedded SQLite broker).

    python examples/quickstart.py                              # starts workers, sends tasks, prints results
    qtasks-fast -A examples.quickstart run --processes 2       # or run the workers yourself

The embedded database is examples/.qtasks_fast/quickstart.sqlite3, next to this file whatever the
current directory: the workers import this module, so they find the same file.
Set QTASKS_BROKER_URL=redis://127.0.0.1:6379/0 to use Redis instead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qtasks_fast import QueueTasks

app = QueueTasks("quickstart")


@app.task
def add(a: int, b: int) -> int:
    """A sync task: runs in the worker's thread pool."""
    return a + b


@app.task(retry=2)
async def fetch_user(user_id: int) -> dict[str, object]:
    """An async task: runs concurrently on the worker's event loop."""
    await asyncio.sleep(0.01)
    return {"id": user_id, "name": f"user-{user_id}"}


@app.task(generate_handler=lambda chunk: chunk.upper())
def shout(words: list[str]):  # type: ignore[no-untyped-def]
    """A generator task: every yielded value goes through generate_handler; the list is the result."""
    yield from words


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    workers = subprocess.Popen([sys.executable, "-m", "qtasks_fast", "-A", "examples.quickstart", "run",
                                "--processes", "2", "--worker-id", "quickstart"], cwd=root, env=env)
    try:
        started = time.monotonic()
        calls = [add.add_task(i, i) for i in range(20)] + [fetch_user.add_task(i) for i in range(5)]
        calls.append(shout.add_task(["fast", "tasks"]))
        table = Table(title="quickstart results")
        for col in ("task", "uuid", "status", "returning"):
            table.add_column(col)
        ok = True
        for call in calls:
            assert call is not None
            done = app.wait(call.uuid, timeout=60)
            ok &= done is not None and done.status == "success"
            table.add_row(call.task_name, str(call.uuid)[:8], done.status if done else "timeout",
                          repr(done.returning) if done else "-")
        Console().print(table)
        print(f"{len(calls)} tasks done in {time.monotonic() - started:.2f}s on 2 worker processes")
        return 0 if ok else 1
    finally:
        workers.send_signal(signal.SIGTERM)
        workers.wait(60)


if __name__ == "__main__":
    sys.exit(main())
