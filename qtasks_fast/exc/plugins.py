"""QTasks' ``qtasks.exc.plugins`` path."""

from qtasks_fast.exceptions import TaskPluginTriggerError

__all__ = ["TaskPluginTriggerError"]
