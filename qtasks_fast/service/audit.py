"""The audit log of actions taken through the service: written through the backend (:class:`AuditLog`) so
every dashboard of the fleet shows the same who/what/when, and logged locally as well.

A backend without the capability does not block an action: the entry is logged (one line) and
:func:`entries` answers :class:`~qtasks_fast.service.errors.Unavailable` naming the missing capability.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from qtasks_fast.abc.capabilities import AuditEntry, AuditLog, NotSupported, require
from qtasks_fast.log import get_logger
from qtasks_fast.service.guard import Caller, translated

if TYPE_CHECKING:
    from qtasks_fast.app import BaseQueueTasks

log = get_logger("audit")


async def record(app: BaseQueueTasks, caller: Caller, action: str, target: str, outcome: str = "") -> None:
    """Write one entry; a failure to store it is logged, never undoes nor hides the action."""
    entry = AuditEntry(at=time.time(), who=caller.who, action=action, target=target, outcome=outcome)
    log.info("audit: %s %s %s: %s", caller.who, action, target, outcome)
    try:
        await require(app.broker, AuditLog).audit(entry)
    except NotSupported:
        pass
    except Exception as exc:  # noqa: BLE001 - the action happened: say the entry is missing, once
        log.warning("audit entry not stored (%s %s %s): %s", caller.who, action, target, type(exc).__name__)


async def entries(app: BaseQueueTasks, limit: int = 100) -> list[AuditEntry]:
    """The newest ``limit`` audit entries (1..1000), newest first."""
    from qtasks_fast.service.errors import BadRequest

    if not 1 <= limit <= 1000:
        raise BadRequest("limit", f"limit must be 1 to 1000, got {limit}")
    with translated():
        return await require(app.broker, AuditLog).audit_entries(limit)
