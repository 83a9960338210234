"""QTasks' exception package (``qtasks.exc``): the same names, defined in :mod:`qtasks_fast.exceptions`."""

from qtasks_fast.exceptions import TaskCancelError, TaskPluginTriggerError

__all__ = ["TaskCancelError", "TaskPluginTriggerError"]
