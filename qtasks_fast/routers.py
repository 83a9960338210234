"""QTasks' router names (``qtasks.routers.SyncRouter/AsyncRouter``) over :class:`qtasks_fast.router.Router`.

Why two names for one router: QTasks picks the router by the app's client (a ``SyncRouter`` for
``qtasks.QueueTasks``, an ``AsyncRouter`` for ``qtasks.asyncio.QueueTasks``). Here a router task sends
through whichever app included it, so both behave alike; they exist so QTasks code imports unchanged.
"""

from __future__ import annotations

from qtasks_fast.router import Router


class SyncRouter(Router):
    """QTasks' ``SyncRouter()``: tasks declared apart from a sync app; ``app.include_router(router)``."""


class AsyncRouter(Router):
    """QTasks' ``AsyncRouter()``: tasks declared apart from an async app; ``app.include_router(router)``."""


__all__ = ["AsyncRouter", "SyncRouter"]

#: QTasks imports classes from modules below this one (qtasks_fast.qtasks_paths): a package for the import system
__path__: list[str] = []
