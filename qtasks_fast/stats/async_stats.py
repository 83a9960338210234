"""QTasks' ``qtasks.stats.async_stats.AsyncStats``."""

from __future__ import annotations

from qtasks_fast import control
from qtasks_fast.stats.base import BaseStats
from qtasks_fast.stats.inspect import InspectStats


class AsyncStats(BaseStats):
    """QTasks' ``AsyncStats(app)``: ``await stats.inspect()`` reads the fleet now and returns the snapshot."""

    async def inspect(self) -> InspectStats:
        return InspectStats(self.app, await control.fleet(self.app))


__all__ = ["AsyncStats"]
