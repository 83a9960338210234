"""Pluggable producer-side components of an app (``TaskManager``)."""

from qtasks_fast.components.task_manager import PendingTask, TaskManager

__all__ = ["PendingTask", "TaskManager"]
