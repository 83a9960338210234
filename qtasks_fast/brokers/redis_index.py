"""The few query-side writes ``RedisBroker`` makes from Python rather than in its Lua (see redis.lua's header).

* ``process`` events of the fetches that bypass the Lua op (plain XREADGROUP: the hot read and the blocking
  read): one XADD to ``P:ev`` per fetched batch and queue, sent in one pipeline with nothing else waiting
  on it, the same entry layout the Lua writes;
* restart links (``P:rs:<uuid>``) of ``app.restart`` enqueues, rare enough to cost a command of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.schemas.envelope import META_RESTART_OF

if TYPE_CHECKING:
    from qtasks_fast.schemas import Envelope

#: P:ev entries kept at least (MAXLEN ~, as the Lua's EV_KEEP)
EV_KEEP = 10000


class _UuidName(msgspec.Struct):
    """Only the uuid and task name of an envelope: decoding skips the arguments without building them."""

    uuid: str = msgspec.field(name="u", default="")
    task_name: str = msgspec.field(name="n", default="")


_Event = msgspec.msgpack.Decoder(_UuidName)


def process_events(prefix: str, consumer: str, flat: Sequence[Any]) -> tuple[Any, ...] | None:
    """The XADD of the ``process`` events of one fetched batch ``[prio, id, envelope, deliveries]*`` (None
    when it holds no envelope of ours)."""
    events: list[str] = []
    for j in range(2, len(flat), 4):
        try:
            env = _Event.decode(flat[j])
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a malformed body: the worker dead-letters it (and that writes its event)
        events += (env.uuid, "process", env.task_name, consumer)
    if not events:
        return None
    return ("XADD", f"{prefix}:ev", "MAXLEN", "~", EV_KEEP, "*", "c", len(events) // 4, "b",
            msgspec.msgpack.encode(events))


def restart_links(prefix_of: Any, envelopes: Sequence[Envelope], skipped: dict[str, str],
                  ttl_ms: int) -> list[tuple[Any, ...]]:
    """SADD + PEXPIRE of ``P:rs:<restarted uuid>`` for each enqueued envelope that restarts another."""
    cmds: list[tuple[Any, ...]] = []
    for e in envelopes:
        of = e.meta.get(META_RESTART_OF) if e.meta else None
        if of and e.uuid not in skipped:
            key = f"{prefix_of(e.queue)}:rs:{of}"
            cmds += [("SADD", key, e.uuid), ("PEXPIRE", key, ttl_ms)]
    return cmds


__all__ = ["EV_KEEP", "process_events", "restart_links"]
