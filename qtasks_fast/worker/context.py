"""What an ``echo=True`` task receives as its first argument (QTasks ``self``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn

from qtasks_fast.exceptions import TaskCancel
from qtasks_fast.log import get_logger, task_label
from qtasks_fast.schemas import Task, record_from_envelope

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope
    from qtasks_fast.task import TaskFunc


class TaskContext:
    """``self.ctx`` inside an echo task: its id, a logger that names it, its metadata, and cancel."""

    def __init__(self, env: Envelope, worker_id: str) -> None:
        self._env = env
        self.task_uuid = env.uuid
        self.worker_id = worker_id

    def get_logger(self, name: str | None = None) -> logging.LoggerAdapter[logging.Logger]:
        label = task_label(self._env.task_name, self._env.uuid)
        return logging.LoggerAdapter(get_logger(name or "task"), {"task": label})

    def get_metadata(self) -> Task:
        task = record_from_envelope(self._env, "process")
        task.worker_id = self.worker_id
        return task

    def cancel(self, reason: str = "") -> NoReturn:
        """End this task now with status ``cancel`` and ``reason`` as its traceback text."""
        raise TaskCancel(reason)


class EchoTask:
    """The registered task plus this call's context."""

    def __init__(self, task: TaskFunc, env: Envelope, worker_id: str) -> None:
        self.task = task
        self.task_name = task.name
        self.ctx = TaskContext(env, worker_id)

    def __getattr__(self, item: str) -> Any:
        return getattr(self.task, item)
