"""QTasks' ``qtasks.configs.config.QueueConfig`` path: the app's settings, :class:`qtasks_fast.config.GlobalConfig`."""

from qtasks_fast.config import GlobalConfig as QueueConfig

__all__ = ["QueueConfig"]
