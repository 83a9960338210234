"""QTasks' ``qtasks.stats`` package: ``SyncStats``/``AsyncStats`` and the ``InspectStats`` snapshot they return.

    stats = SyncStats(app).inspect()          # AsyncStats(app): await stats.inspect()
    print(stats.app())                        # label: value lines; stats.app(json=True): a JSON string

A package, as in QTasks, so its module paths (``qtasks.stats.inspect.InspectStats``,
``qtasks.stats.sync_stats.SyncStats``, ...) resolve with only ``qtasks`` changed to ``qtasks_fast``; the names
are re-exported here, where they always were.
"""

from __future__ import annotations

from qtasks_fast.stats.async_stats import AsyncStats
from qtasks_fast.stats.base import BaseStats
from qtasks_fast.stats.inspect import LABEL_WIDTH, RULE, InspectStats
from qtasks_fast.stats.sync_stats import SyncStats

__all__ = ["LABEL_WIDTH", "RULE", "AsyncStats", "BaseStats", "InspectStats", "SyncStats"]
