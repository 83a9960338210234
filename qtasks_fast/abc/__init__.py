"""The contracts a user implements to plug in their own components.

Each one fits on a screen. Implementations live elsewhere (``backends/<name>/``); the worker and the clients
only ever talk to these: the core :class:`Broker`, the optional capabilities a broker declares
(:mod:`qtasks_fast.abc.capabilities`, checked with :func:`require`), :class:`Storage` and its query side
(:mod:`qtasks_fast.abc.query`), and the :class:`BackendFactory` a URL scheme registers.
"""

from qtasks_fast.abc.backend import BackendFactory, Migrations
from qtasks_fast.abc.broker import Broker, Delivery, Outcome
from qtasks_fast.abc.capabilities import (
    ALL,
    AuditEntry,
    AuditLog,
    BrokerMemory,
    Cancel,
    Claims,
    DeadLetter,
    DeadLetters,
    Delays,
    FlushAll,
    Limits,
    NotSupported,
    Purge,
    QueueStatistics,
    QueueStats,
    TaskTable,
    TransactionalEnqueue,
    UniqueKeys,
    WorkerInfo,
    WorkerRegistry,
    declared,
    require,
)
from qtasks_fast.abc.storage import Storage

#: every optional broker capability (see qtasks_fast.abc.capabilities for who declares which)
CAPABILITIES = ALL

__all__ = ["CAPABILITIES", "AuditEntry", "AuditLog", "BackendFactory", "Broker", "BrokerMemory", "Cancel",
           "Claims", "DeadLetter", "DeadLetters", "Delays", "Delivery", "FlushAll", "Limits", "Migrations",
           "NotSupported", "Outcome", "Purge", "QueueStatistics", "QueueStats", "Storage", "TaskTable",
           "TransactionalEnqueue", "UniqueKeys", "WorkerInfo", "WorkerRegistry", "declared", "require"]
