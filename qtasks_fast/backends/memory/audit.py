"""The memory backend's audit log (:class:`~qtasks_fast.abc.capabilities.AuditLog`): the newest
``AUDIT_KEPT`` entries of the state, ids counting up."""

from __future__ import annotations

import msgspec

from qtasks_fast.abc.capabilities import AuditEntry, AuditLog
from qtasks_fast.backends.memory.state import InMemoryState


class MemoryAudit(AuditLog):
    state: InMemoryState

    async def audit(self, entry: AuditEntry) -> str:
        with self.state.lock:
            self.state.audit_seq += 1
            stored = msgspec.structs.replace(entry, id=str(self.state.audit_seq))
            self.state.audit.append(stored)
        return stored.id

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        with self.state.lock:
            entries = list(self.state.audit)
        return entries[::-1][:limit]
