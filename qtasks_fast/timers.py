"""QTasks' import path for timers: ``from qtasks_fast.timers import AsyncTimer`` (see :mod:`qtasks_fast.periodic`)."""

from qtasks_fast.periodic import AsyncTimer, SyncTimer, Timer

__all__ = ["AsyncTimer", "SyncTimer", "Timer"]

#: QTasks imports classes from modules below this one (qtasks_fast.qtasks_paths): a package for the import system
__path__: list[str] = []
