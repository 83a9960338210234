"""QTasks' per-status record schemas (``qtasks.schemas.task_status``): the shape a QTasks storage stores a task
in at each status, kept so ported storages and plugins that build or read them run unchanged.

Here a storage receives envelopes and returns :class:`~qtasks_fast.schemas.task.Task` records
(docs/from-qtasks.md, "a worked port"); :func:`status_schema` turns such a record into the QTasks schema of its
status, for code that still stores or compares QTasks' form (arguments as JSON text, times as unix seconds).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

from qtasks_fast.enums.task_status import TaskStatus

if TYPE_CHECKING:
    from qtasks_fast.schemas.task import Task


@dataclasses.dataclass
class BaseTaskStatusSchema:
    """Fields every status shares; ``args``/``kwargs`` are JSON text (given objects are dumped), as in QTasks."""

    task_name: str = ""
    priority: int = 0
    args: str = "[]"
    kwargs: str = "{}"
    created_at: float = 0.0
    updated_at: float = dataclasses.field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.args, str):
            self.args = json.dumps(self.args)
        if not isinstance(self.kwargs, str):
            self.kwargs = json.dumps(self.kwargs)


@dataclasses.dataclass
class TaskStatusNewSchema(BaseTaskStatusSchema):
    status: str = TaskStatus.NEW.value


@dataclasses.dataclass
class TaskStatusProcessSchema(BaseTaskStatusSchema):
    status: str = TaskStatus.PROCESS.value


@dataclasses.dataclass
class TaskStatusSuccessSchema(BaseTaskStatusSchema):
    status: str = TaskStatus.SUCCESS.value
    returning: str = ""


@dataclasses.dataclass
class TaskStatusErrorSchema(BaseTaskStatusSchema):
    status: str = TaskStatus.ERROR.value
    traceback: str = ""
    # set on the class by QTasks' retry plugin, not fields of the record (as there)
    retry: ClassVar[int | None] = None
    retry_child_uuid: ClassVar[str | None] = None
    retry_parent_uuid: ClassVar[str | None] = None


@dataclasses.dataclass
class TaskStatusCancelSchema(BaseTaskStatusSchema):
    status: str = TaskStatus.CANCEL.value
    cancel_reason: str = ""


_BY_STATUS: dict[str, type[BaseTaskStatusSchema]] = {
    TaskStatus.NEW.value: TaskStatusNewSchema, TaskStatus.PROCESS.value: TaskStatusProcessSchema,
    TaskStatus.SUCCESS.value: TaskStatusSuccessSchema, TaskStatus.ERROR.value: TaskStatusErrorSchema,
    TaskStatus.CANCEL.value: TaskStatusCancelSchema,
}


def status_schema(task: Task) -> BaseTaskStatusSchema:
    """The QTasks schema of ``task``'s status, filled from the record: ``returning`` of a success as JSON text
    (QTasks stores it so), the traceback of an error; the cancel reason is the record's traceback here.

    Raises ``ValueError`` for a status with no QTasks schema (a custom storage's own), naming the ones there are.
    """
    cls = _BY_STATUS.get(task.status)
    if cls is None:
        raise ValueError(f"status_schema: QTasks has no schema for status {task.status!r}; it has "
                         f"{', '.join(_BY_STATUS)}")
    fields: dict[str, Any] = {"task_name": task.task_name, "priority": task.priority, "args": list(task.args),
                              "kwargs": dict(task.kwargs), "created_at": task.created_at.timestamp(),
                              "updated_at": task.updated_at.timestamp()}
    if cls is TaskStatusSuccessSchema:
        fields["returning"] = json.dumps(task.returning, default=str)
    elif cls is TaskStatusErrorSchema:
        fields["traceback"] = task.traceback or ""
    elif cls is TaskStatusCancelSchema:
        fields["cancel_reason"] = task.traceback or ""
    return cls(**fields)


__all__ = ["BaseTaskStatusSchema", "TaskStatusCancelSchema", "TaskStatusErrorSchema", "TaskStatusNewSchema",
           "TaskStatusProcessSchema", "TaskStatusSuccessSchema", "status_schema"]
