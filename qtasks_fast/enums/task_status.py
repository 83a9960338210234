"""Task statuses (QTasks ``qtasks.enums.task_status``)."""

from __future__ import annotations

import enum


class TaskStatus(str, enum.Enum):
    """Lifecycle of a task record, as in QTasks."""

    NEW = "new"
    PROCESS = "process"
    SUCCESS = "success"
    ERROR = "error"
    CANCEL = "cancel"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.SUCCESS, TaskStatus.ERROR, TaskStatus.CANCEL)


#: QTasks' name of the same enum (``TaskStatusEnum.SUCCESS.value == "success"``); one class, two names
TaskStatusEnum = TaskStatus

__all__ = ["TaskStatus", "TaskStatusEnum"]
