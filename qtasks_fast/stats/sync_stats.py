"""QTasks' ``qtasks.stats.sync_stats.SyncStats``."""

from __future__ import annotations

from qtasks_fast import control
from qtasks_fast.stats.base import BaseStats
from qtasks_fast.stats.inspect import InspectStats


class SyncStats(BaseStats):
    """QTasks' ``SyncStats(app)``: :meth:`inspect` reads the fleet now (blocking) and returns the snapshot."""

    def inspect(self) -> InspectStats:
        from qtasks_fast.portal import portal

        return InspectStats(self.app, portal().run(control.fleet(self.app)))


__all__ = ["SyncStats"]
