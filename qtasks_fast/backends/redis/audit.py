"""The Redis backend's audit log (:class:`~qtasks_fast.abc.capabilities.AuditLog`): the stream
``qtf:{<app>}:audit`` (see the key list of redis.lua), field ``e`` = msgpack ``AuditEntry``, XADD with
``MAXLEN ~ AUDIT_KEPT``; the entry id is the stream id. Written and read from Python: an action is rare."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import redis

from qtasks_fast.abc.capabilities import AUDIT_KEPT, AuditEntry, AuditLog
from qtasks_fast.backends._audit import decode_entries
from qtasks_fast.backends.redis.errors import outage

if TYPE_CHECKING:
    from qtasks_fast.backends.redis.broker import RedisConnection


def audit_key(app: str) -> str:
    """The app's audit stream (see redis.lua, key ``qtf:{<app>}:audit``)."""
    return f"qtf:{{{app}}}:audit"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisAudit(AuditLog):
    conn: RedisConnection
    app_name: str
    url: str

    async def audit(self, entry: AuditEntry) -> str:
        try:
            entry_id = await self.conn.aio.xadd(audit_key(self.app_name), {"e": msgspec.msgpack.encode(entry)},
                                                maxlen=AUDIT_KEPT, approximate=True)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        return _text(entry_id)

    async def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        try:
            rows: Any = await self.conn.aio.xrevrange(audit_key(self.app_name), count=limit)
        except redis.RedisError as exc:
            raise outage(self.url, exc) from exc
        return decode_entries((_text(entry_id), fields.get(b"e")) for entry_id, fields in rows)
