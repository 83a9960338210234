"""QTasks' ``qtasks.stats.base.BaseStats``: what ``SyncStats`` and ``AsyncStats`` share (the app they read)."""

from __future__ import annotations

from typing import Any


class BaseStats:
    """The app whose stats are read; QTasks' ``plugins=`` are refused (plugins are the app's here)."""

    def __init__(self, app: Any, plugins: dict[str, list[Any]] | None = None) -> None:
        if plugins:
            raise TypeError(f"{type(self).__name__}(plugins=...): add plugins to the app (app.add_plugin) instead")
        self.app = app
        self.plugins: dict[str, list[Any]] = {}


__all__ = ["BaseStats"]
