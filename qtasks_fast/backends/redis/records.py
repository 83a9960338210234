"""Task records of the Redis backend (key ``P:t:<uuid>``, see redis.lua): their msgpack layouts, old and new.

Apart from :mod:`qtasks_fast.backends.redis.storage` so that its query side (``query``) reads records without an
import cycle.
"""

from __future__ import annotations

import msgspec

from qtasks_fast.schemas import Envelope, Task, task_from_envelope

env_decode = msgspec.msgpack.Decoder(Envelope).decode


_record_decode = msgspec.msgpack.Decoder(tuple[bytes, str, str, bytes, str, str, str, int, int]).decode
#: records written before the start time (and dead letters): 8 elements
_record8_decode = msgspec.msgpack.Decoder(tuple[bytes, str, str, bytes, str, str, str, int]).decode
#: records written before the delivery count (and cancels, whose count is not known): 7 elements
_record7_decode = msgspec.msgpack.Decoder(tuple[bytes, str, str, bytes, str, str, str]).decode

#: a record's parts: envelope, status, updated ms, returning, worker, traceback, retry child, deliveries,
#: started ms (0 = not known)
RecordParts = tuple[bytes, str, str, bytes, str, str, str, int, int]


def record_parts(blob: bytes) -> RecordParts:
    """The 9 parts of a stored record (P:t), whichever of its three layouts it was written in: older records
    stay readable. Raises ``msgspec.DecodeError``/``ValidationError`` when ``blob`` is not a record."""
    try:
        return _record_decode(blob)
    except msgspec.ValidationError:
        pass
    try:
        return (*_record8_decode(blob), 0)
    except msgspec.ValidationError:
        return (*_record7_decode(blob), 1, 0)


def encode_record(envelope: bytes, status: str, updated_ms: int, returning: bytes = b"", worker: str = "",
                  traceback: str = "", retry_child: str = "", deliveries: int = 1, started_ms: int = 0) -> bytes:
    """A record as stored at P:t (see redis.lua); the worker's core builds the same array on the hot path."""
    return msgspec.msgpack.encode((envelope, status, str(updated_ms), returning, worker, traceback, retry_child,
                                   deliveries, started_ms))


def parse_record_blob(blob: bytes, queue: str) -> Task | None:
    """A stored record (P:t); None when the bytes are not one (e.g. a bare status on a reply list)."""
    try:
        e, status, updated, ret, worker, tb, child, deliveries, _ = record_parts(blob)
        env = env_decode(e)
    except Exception:  # noqa: BLE001 - also a body nested too deeply to decode (RecursionError)
        return None
    return task_from_envelope(env, status, updated=int(updated or 0) / 1000, returning=ret, traceback=tb,
                              retry_child=child, worker_id=worker, queue=queue, deliveries=deliveries)


def parse_record(fields: dict[bytes, bytes], queue: str) -> Task | None:
    """A ``Task`` from what the Lua ops get/watch return: ``{R: record}``, or the fields of a live task."""
    if not fields:
        return None
    if b"R" in fields:
        return parse_record_blob(fields[b"R"], queue)
    if b"e" not in fields:
        return None
    env = env_decode(fields[b"e"])
    worker = fields[b"wk"].decode() if b"wk" in fields else ""
    return task_from_envelope(env, fields.get(b"s", b"new").decode(), updated=int(fields.get(b"u", b"0")) / 1000,
                              worker_id=worker, queue=queue)


def parse_reply(payload: bytes, queue: str) -> Task | None:
    """The record pushed on a reply list; None for anything else."""
    return parse_record_blob(payload, queue)
