"""Wire and record types (QTasks ``qtasks.schemas``).

:mod:`~qtasks_fast.schemas.envelope` holds what travels through the broker, :mod:`~qtasks_fast.schemas.task`
the ``Task`` record every storage returns, :mod:`~qtasks_fast.schemas.test` QTasks' ``TestConfig``, and QTasks'
other public schemas where they mean something here (``task_status``, ``task_exec``, ``global_config``). Every
name stays importable from ``qtasks_fast.schemas`` as before the split.
"""

from typing import TYPE_CHECKING

from qtasks_fast._lazy import lazy_names
from qtasks_fast.enums.task_status import TaskStatus
from qtasks_fast.schemas.envelope import (
    META_ATTEMPT,
    META_CHAIN,
    META_EXTRA,
    META_GROUP,
    META_REPLY,
    META_RESTART_OF,
    META_UNIQUE,
    META_UNIQUE_OWNER,
    Envelope,
    Minted,
    releases_unique,
    unique_owner,
    with_record_extra,
)
from qtasks_fast.schemas.global_config import GlobalConfigSchema
from qtasks_fast.schemas.task import Task, record_from_envelope, task_from_envelope, ts_to_dt
from qtasks_fast.schemas.task_status import (
    BaseTaskStatusSchema,
    TaskStatusCancelSchema,
    TaskStatusErrorSchema,
    TaskStatusNewSchema,
    TaskStatusProcessSchema,
    TaskStatusSuccessSchema,
    status_schema,
)
from qtasks_fast.schemas.test import TestConfig

if TYPE_CHECKING:
    from qtasks_fast.task import TaskExecSchema as TaskExecSchema

#: QTasks' TaskExecSchema is our TaskFunc (qtasks_fast.schemas.task_exec): loaded on use, the task module
#: imports this package
__getattr__ = lazy_names(__name__, {"TaskExecSchema": "qtasks_fast.task"})

__all__ = [
    "META_ATTEMPT",
    "META_CHAIN",
    "META_EXTRA",
    "META_GROUP",
    "META_REPLY",
    "META_RESTART_OF",
    "META_UNIQUE",
    "META_UNIQUE_OWNER",
    "BaseTaskStatusSchema",
    "Envelope",
    "GlobalConfigSchema",
    "Minted",
    "Task",
    "TaskExecSchema",
    "TaskStatus",
    "TaskStatusCancelSchema",
    "TaskStatusErrorSchema",
    "TaskStatusNewSchema",
    "TaskStatusProcessSchema",
    "TaskStatusSuccessSchema",
    "TestConfig",
    "record_from_envelope",
    "releases_unique",
    "status_schema",
    "task_from_envelope",
    "ts_to_dt",
    "unique_owner",
    "with_record_extra",
]
