"""What every stored audit log does when it reads its entries back (see ``AuditLog.audit_entries``)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from qtasks_fast.abc.capabilities import AuditEntry

_decode = msgspec.msgpack.Decoder(AuditEntry).decode


def decode_entries(rows: Iterable[tuple[str, bytes | None]]) -> list[AuditEntry]:
    """``(id, msgpack blob)`` rows as entries carrying their stored id; a row that is not an entry (another
    version's, or not ours) is skipped rather than failing the whole page."""
    out = []
    for entry_id, blob in rows:
        try:
            entry = _decode(blob) if blob is not None else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            entry = None
        if entry is not None:
            out.append(msgspec.structs.replace(entry, id=entry_id))
    return out
