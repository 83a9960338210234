"""Task results holding ints wider than msgpack's 64 bits (``2**70``), stored losslessly, never pickled.

msgpack, the format of every record here, has no integer wider than 64 bits, so msgspec refuses
``2**70`` with ``OverflowError``. QTasks stores results as JSON, where such an int is fine, so a ported
task may return one. Such a result is stored with each wide int as a msgpack extension (type
:data:`BIGINT_EXT`, the number's decimal text), and every record read turns it back into the same
``int`` (:data:`decode_result`). Only a result that fails the plain encoder is walked: the per-task path of
every other result is unchanged. A wide int used as a dict key, or inside a pydantic model, is still
refused, with a one-line error on the task's record.
"""

from __future__ import annotations

from typing import Any

import msgspec

#: the msgpack extension type of a wide int (any other type is handed back as ``msgspec.msgpack.Ext``)
BIGINT_EXT = 42
_MIN, _MAX = -(2**63), 2**64 - 1


def widen(value: Any) -> Any:
    """``value`` with each int outside msgpack's range as an extension (lists, tuples and dict values walked)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return msgspec.msgpack.Ext(BIGINT_EXT, str(int(value)).encode("ascii")) if not _MIN <= value <= _MAX else value
    if isinstance(value, (list, tuple)):
        return [widen(v) for v in value]
    if isinstance(value, dict):
        return {k: widen(v) for k, v in value.items()}
    return value


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == BIGINT_EXT:
        return int(bytes(data))
    return msgspec.msgpack.Ext(code, bytes(data))


#: msgpack bytes of a stored result to its value, wide ints included
decode_result = msgspec.msgpack.Decoder(ext_hook=_ext_hook).decode
