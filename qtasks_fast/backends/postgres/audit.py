"""The PostgreSQL backend's audit log (:class:`~qtasks_fast.abc.capabilities.AuditLog`): table ``audit``, one
msgpack ``AuditEntry`` per row, the newest ``AUDIT_KEPT`` of each app kept (older rows deleted at each write;
actions are rare, so the delete costs nothing that matters). As on SQLite and Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from qtasks_fast.abc.capabilities import AUDIT_KEPT, AuditEntry, AuditLog
from qtasks_fast.backends._audit import decode_entries
from qtasks_fast.backends.postgres.db import now_ms

if TYPE_CHECKING:
    from qtasks_fast.backends.postgres.db import PgDb


class PgAudit(AuditLog):
    db: PgDb
    app_name: str

    async def audit(self, entry: AuditEntry) -> str:
        async with self.db.tx() as conn:
            row_id = await conn.fetchval("INSERT INTO audit (app, at, entry) VALUES ($1, $2, $3) RETURNING id",
                                         self.app_name, now_ms(), msgspec.msgpack.encode(entry))
            await conn.execute("DELETE FROM audit WHERE app = $1 AND id <= (SELECT id FROM audit WHERE app = $1"
                               " ORDER BY id DESC LIMIT 1 OFFSET $2)", self.app_name, AUDIT_KEPT)
        return str(row_id)

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self.db.fetch("SELECT id, entry FROM audit WHERE app = $1 ORDER BY id DESC LIMIT $2",
                                   self.app_name, limit)
        return decode_entries((str(row_id), blob) for row_id, blob in rows)
