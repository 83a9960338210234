"""QTasks' ``qtasks.contexts``: ``SyncContext`` and ``AsyncContext`` name our one :class:`TaskContext`.

``self.ctx`` of an ``echo=True`` task is a ``TaskContext`` whichever client the app is (its waiting calls follow
the task: coroutines in an ``async def`` task), so QTasks code that annotates or checks it with either name works.
"""

from qtasks_fast.worker.context import TaskContext

SyncContext = TaskContext
AsyncContext = TaskContext

__all__ = ["AsyncContext", "SyncContext"]
