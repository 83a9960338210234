"""The contracts a user implements to plug in their own components.

Each one fits on a screen. Implementations live elsewhere (``backends/<name>/``);
the worker and the clients only ever talk to these.
"""

from qtasks_fast.abc.backend import BackendFactory
from qtasks_fast.abc.broker import Broker, DeadLetter, Delivery, NotSupported, Outcome, QueueStats, WorkerInfo
from qtasks_fast.abc.storage import Storage

__all__ = ["BackendFactory", "Broker", "DeadLetter", "Delivery", "NotSupported", "Outcome", "QueueStats", "Storage",
           "WorkerInfo"]
