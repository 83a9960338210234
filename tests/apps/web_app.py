"""Test app of the WebView/REST tests (tests/test_web_*.py): tasks that succeed, fail, log and sleep.

Its name and broker come from the environment (TEST_APP_NAME, QTASKS_BROKER_URL) when served by
``qtasks-fast web`` in a process; in process, :func:`build` makes a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import os

from qtasks_fast import QueueTasks
from qtasks_fast.middlewares import LogCapture


def build(name: str, url: str | None) -> QueueTasks:
    app = QueueTasks(name, broker_url=url)
    app.add_middleware(LogCapture)

    @app.task
    def add(a: int, b: int) -> int:
        logging.getLogger("web_app").warning("adding %d and %d", a, b)
        return a + b

    @app.task
    def fail(message: str) -> None:
        raise ValueError(message)

    @app.task
    async def sleeper(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "woke"

    @app.task(queue="other")
    def elsewhere() -> str:
        return "other"

    return app


app = build(os.environ.get("TEST_APP_NAME", "web"), os.environ.get("QTASKS_BROKER_URL"))
