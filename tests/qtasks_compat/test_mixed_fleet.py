"""A mixed fleet on one Redis (issue 11, review finding 12): QTasks' producers push to the list
``<name>:task_queue``, which no qtasks_fast worker reads (another wire and key layout, docs/from-qtasks.md
"Mixed fleet"). A worker that starts while that list holds tasks says so in one WARNING, so a rolling migration
(old producers, new workers) does not lose work silently."""

from __future__ import annotations

import logging
import time
import uuid

import pytest
import redis

from qtasks_fast import QueueTasks
from qtasks_fast.testing import WorkerThread


def _started(app: QueueTasks, caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    with caplog.at_level(logging.INFO, logger="qtasks_fast"), WorkerThread(app):
        deadline = time.monotonic() + 10  # the worker starts serving after WorkerThread returns
        while not any("serving queues" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
    return [r for r in caplog.records if "QTasks producers" in r.getMessage()]


def test_a_worker_warns_once_when_qtasks_queue_holds_tasks(
    redis_url: str, app_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.rpush(f"{app_name}:task_queue", f"add:{uuid.uuid4()}:0", f"add:{uuid.uuid4()}:0")  # QTasks' add_task
    app = QueueTasks(app_name, broker_url=redis_url)
    try:
        warned = _started(app, caplog)
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        text = warned[0].getMessage()
        assert f"'{app_name}:task_queue' holds 2 task(s)" in text and "Mixed fleet" in text and "\n" not in text
    finally:
        raw.delete(f"{app_name}:task_queue")
        app.flush_all()
        app.close()


def test_no_warning_without_qtasks_tasks(redis_url: str, app_name: str, caplog: pytest.LogCaptureFixture) -> None:
    app = QueueTasks(app_name, broker_url=redis_url)
    try:
        assert _started(app, caplog) == []
    finally:
        app.flush_all()
        app.close()
