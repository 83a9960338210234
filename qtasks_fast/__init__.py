"""qtasks_fast: a QTasks-style task queue with a compiled dispatch core.

    from qtasks_fast import QueueTasks
    app = QueueTasks(broker_url="redis://localhost:6379/0")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    task = add.add_task(1, 2, timeout=5)  # once a worker runs: qtasks-fast -A module:app run
    task.returning if task else None      # 3; add_task returns None when not finished within timeout
"""

from qtasks_fast.app import QueueTasks
from qtasks_fast.canvas import ChainResult, GroupResult, chain, group
from qtasks_fast.components.task_manager import TaskManager
from qtasks_fast.config import GlobalConfig
from qtasks_fast.depends import AsyncState, Depends, State, SyncState
from qtasks_fast.exceptions import (
    BrokerError,
    BrokerFull,
    BrokerRefused,
    BrokerUnavailable,
    PayloadTooLarge,
    QTasksError,
    TaskArgumentsError,
    TaskCancel,
    TaskNotFound,
)
from qtasks_fast.middleware import Middleware
from qtasks_fast.periodic import AsyncTimer, SyncTimer, Timer
from qtasks_fast.plugins import BasePlugin
from qtasks_fast.router import Router, shared_task
from qtasks_fast.routers import AsyncRouter, SyncRouter
from qtasks_fast.schemas import Task, TaskStatus
from qtasks_fast.worker.followups import feed

__version__ = "0.1.0"

__all__ = [
    "AsyncRouter",
    "AsyncState",
    "AsyncTimer",
    "BasePlugin",
    "BrokerError",
    "BrokerFull",
    "BrokerRefused",
    "BrokerUnavailable",
    "Depends",
    "Middleware",
    "State",
    "SyncRouter",
    "SyncState",
    "SyncTimer",
    "TaskManager",
    "Timer",
    "feed",
    "ChainResult",
    "GlobalConfig",
    "GroupResult",
    "PayloadTooLarge",
    "QTasksError",
    "QueueTasks",
    "Router",
    "Task",
    "TaskArgumentsError",
    "TaskCancel",
    "TaskNotFound",
    "TaskStatus",
    "__version__",
    "chain",
    "group",
    "shared_task",
]
