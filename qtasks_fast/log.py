"""One log vocabulary: every line names the worker id, and task lines name the task and its id.

    2026-11-28 20:01:02,345 INFO qtasks_fast [w1-0] task add[6f1c...] success in 0.4 ms
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "qtasks_fast"
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(worker)s] %(message)s"


class _WorkerFilter(logging.Filter):
    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.worker
        return True


def setup_logging(level: str | int = "INFO", worker: str = "-") -> logging.Logger:
    """Configure the ``qtasks_fast`` logger for a process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level if isinstance(level, int) else level.upper())
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_WorkerFilter(worker))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")


def task_label(task_name: str, uuid: str) -> str:
    """How every log line refers to a task: ``name[uuid]``."""
    return f"{task_name}[{uuid}]"
