"""The SQLite backend's audit log (:class:`~qtasks_fast.abc.capabilities.AuditLog`): table ``audit``, one
msgpack ``AuditEntry`` per row, the newest ``AUDIT_KEPT`` of each app kept (older rows deleted at each write;
actions are rare, so the delete costs nothing that matters)."""

from __future__ import annotations

import msgspec

from qtasks_fast.abc.capabilities import AUDIT_KEPT, AuditEntry, AuditLog
from qtasks_fast.backends._audit import decode_entries
from qtasks_fast.backends.sqlite.db import SqliteConnection, now_ms


class SqliteAudit(AuditLog):
    conn: SqliteConnection
    app_name: str

    async def audit(self, entry: AuditEntry) -> str:
        async with self.conn.atx() as db:
            cur = db.execute("INSERT INTO audit (app, at, entry) VALUES (?, ?, ?)",
                             (self.app_name, now_ms(), msgspec.msgpack.encode(entry)))
            row_id = cur.lastrowid
            db.execute("DELETE FROM audit WHERE app = ?1 AND id <= (SELECT id FROM audit WHERE app = ?1"
                       " ORDER BY id DESC LIMIT 1 OFFSET ?2)", (self.app_name, AUDIT_KEPT))
        return str(row_id)

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = self.conn.read("SELECT id, entry FROM audit WHERE app = ? ORDER BY id DESC LIMIT ?",
                              (self.app_name, limit))
        return decode_entries((str(row_id), blob) for row_id, blob in rows)
