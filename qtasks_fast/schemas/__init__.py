"""Wire and record types (QTasks ``qtasks.schemas``).

:mod:`~qtasks_fast.schemas.envelope` holds what travels through the broker, :mod:`~qtasks_fast.schemas.task`
the ``Task`` record every storage returns, :mod:`~qtasks_fast.schemas.test` QTasks' ``TestConfig``. Every
name stays importable from ``qtasks_fast.schemas`` as before the split.
"""

from qtasks_fast.enums.task_status import TaskStatus
from qtasks_fast.schemas.envelope import (
    META_ATTEMPT,
    META_CHAIN,
    META_GROUP,
    META_REPLY,
    META_RESTART_OF,
    META_UNIQUE,
    META_UNIQUE_OWNER,
    Envelope,
    releases_unique,
    unique_owner,
)
from qtasks_fast.schemas.task import Task, record_from_envelope, task_from_envelope, ts_to_dt
from qtasks_fast.schemas.test import TestConfig

__all__ = [
    "META_ATTEMPT",
    "META_CHAIN",
    "META_GROUP",
    "META_REPLY",
    "META_RESTART_OF",
    "META_UNIQUE",
    "META_UNIQUE_OWNER",
    "Envelope",
    "Task",
    "TaskStatus",
    "TestConfig",
    "record_from_envelope",
    "releases_unique",
    "task_from_envelope",
    "ts_to_dt",
    "unique_owner",
]
