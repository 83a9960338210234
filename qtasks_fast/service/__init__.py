"""The service layer: UI-agnostic async functions over an app, shared by every control surface.

The WebView and REST API (:mod:`qtasks_fast.web`) call these now, the gRPC gateway (issue 14) later, so the
surfaces cannot disagree. Every function takes the app first; those that change something take a
:class:`Caller` (who, for the audit log; read-only or not). Failures are the typed errors of
:mod:`qtasks_fast.service.errors` only: a surface maps :class:`NotFound`, :class:`BadRequest`,
:class:`ReadOnly` and :class:`Unavailable` to its codes once.
"""

from __future__ import annotations

from qtasks_fast.service.audit import entries as audit_entries
from qtasks_fast.service.bulk import ACTIONS as BULK_ACTIONS
from qtasks_fast.service.bulk import BulkResult, bulk
from qtasks_fast.service.errors import BadRequest, NotFound, ReadOnly, ServiceError, Unavailable
from qtasks_fast.service.fleet import (
    DeadLetterView,
    Health,
    Schedule,
    dead_letter_action,
    dead_letters,
    events,
    health,
    purge,
    queues,
    raw_events,
    schedules,
    throughput,
    workers,
)
from qtasks_fast.service.guard import Caller
from qtasks_fast.service.tasks import (
    cancel,
    checked_filter,
    count_tasks,
    detail,
    get,
    list_tasks,
    logs,
    registered_names,
    restart,
    submit,
)

__all__ = ["BULK_ACTIONS", "BadRequest", "BulkResult", "Caller", "DeadLetterView", "Health", "NotFound", "ReadOnly",
           "Schedule", "ServiceError", "Unavailable", "audit_entries", "bulk", "cancel", "checked_filter",
           "count_tasks", "dead_letter_action", "dead_letters", "detail", "events", "get", "health", "list_tasks",
           "logs", "purge", "queues", "raw_events", "registered_names", "restart", "schedules", "submit", "throughput",
           "workers"]
