"""qtasks_fast: a QTasks-style task queue with a compiled dispatch core.

    from qtasks_fast import QueueTasks
    app = QueueTasks(broker_url="redis://localhost:6379/0")

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    add.add_task(1, 2, timeout=5).returning  # 3, once a worker runs: qtasks-fast -A module:app run
"""

from qtasks_fast.app import QueueTasks
from qtasks_fast.config import GlobalConfig
from qtasks_fast.exceptions import (
    BrokerUnavailable,
    PayloadTooLarge,
    QTasksError,
    TaskArgumentsError,
    TaskCancel,
    TaskNotFound,
)
from qtasks_fast.schemas import Task, TaskStatus

__version__ = "0.1.0"

__all__ = [
    "BrokerUnavailable",
    "GlobalConfig",
    "PayloadTooLarge",
    "QTasksError",
    "QueueTasks",
    "Task",
    "TaskArgumentsError",
    "TaskCancel",
    "TaskNotFound",
    "TaskStatus",
    "__version__",
]
