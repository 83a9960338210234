"""Enums of QTasks' public API (``qtasks.enums``): :class:`TaskStatusEnum`."""

from qtasks_fast.enums.task_status import TaskStatus, TaskStatusEnum

__all__ = ["TaskStatus", "TaskStatusEnum"]
