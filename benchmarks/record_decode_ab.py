"""A/B in one process (issue 11, review findings 3 and 5): what reading a record costs before and after.

- ``Task`` answers the dataclass calls (class attributes ``__dataclass_fields__`` and a ``__dict__`` property):
  "before" is a plain ``msgspec.Struct`` with the same fields, built and decoded the same way.
- A stored result is decoded by ``qtasks_fast.schemas.bigint.decode_result`` (a ``Decoder`` with an ``ext_hook``
  for wide ints); "before" is ``msgspec.msgpack.decode``, what ``task_from_envelope`` called.

Arms interleave round by round; the best of all rounds is printed (ns per call). Run:
``.venv/bin/python benchmarks/record_decode_ab.py``
"""

from __future__ import annotations

import datetime as dt
import timeit
import uuid

import msgspec

from qtasks_fast.schemas.bigint import decode_result
from qtasks_fast.schemas.task import Task

Plain = msgspec.defstruct(
    "Plain",
    [
        (f.name, f.type, f.default) if f.default is not msgspec.NODEFAULT else (f.name, f.type)
        for f in msgspec.structs.fields(Task)
    ],
)
NOW = dt.datetime.now(dt.timezone.utc)
KW = dict(
    status="success",
    uuid=uuid.uuid4(),
    priority=0,
    task_name="add",
    args=(1, 2),
    kwargs={"a": 1},
    created_at=NOW,
    updated_at=NOW,
    returning={"r": [1, 2, 3]},
)
RECORD = msgspec.msgpack.encode(Task(**KW))
RESULT = msgspec.msgpack.encode({"order": 17, "lines": [{"sku": "a", "qty": 2}] * 5, "total": 12.5})
dec_task, dec_plain = msgspec.msgpack.Decoder(Task).decode, msgspec.msgpack.Decoder(Plain).decode
PAIRS = {
    "Task(...) build": (lambda: Plain(**KW), lambda: Task(**KW)),
    "Task record decode": (lambda: dec_plain(RECORD), lambda: dec_task(RECORD)),
    "result decode": (lambda: msgspec.msgpack.decode(RESULT), lambda: decode_result(RESULT)),
}


def main(rounds: int = 25, number: int = 10000) -> None:
    for name, (before, after) in PAIRS.items():
        b, a = [], []
        for _ in range(rounds):
            b.append(min(timeit.repeat(before, number=number, repeat=2)) / number * 1e9)
            a.append(min(timeit.repeat(after, number=number, repeat=2)) / number * 1e9)
        print(f"{name}: before {min(b):.0f} ns, after {min(a):.0f} ns, after/before {min(a) / min(b):.2f}")


if __name__ == "__main__":
    main()
