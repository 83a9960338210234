"""QTasks' ``qtasks.exc.task`` path."""

from qtasks_fast.exceptions import TaskCancelError

__all__ = ["TaskCancelError"]
