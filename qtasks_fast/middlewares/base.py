"""QTasks' ``qtasks.middlewares.base``: ``BaseMiddleware``, the named base of :class:`TaskMiddleware`."""

from qtasks_fast.middlewares.task import BaseMiddleware

__all__ = ["BaseMiddleware"]
