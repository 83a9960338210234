"""The few query-side writes ``RedisBroker`` makes from Python rather than in its Lua (see redis.lua's header).

* the arguments of Lua op ``started`` for the fetches that bypass op fetch (plain XREADGROUP: the hot read
  and the blocking read): the batch's ``process`` events (packed here, the entry layout the Lua writes) and
  the time each task was handed out (for ``P:q``), one call per fetched batch and queue;
* restart links (``P:rs:<uuid>``) of ``app.restart`` enqueues, rare enough to cost a command of their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from qtasks_fast.schemas.envelope import META_RESTART_OF

if TYPE_CHECKING:
    from qtasks_fast.backends.redis.script import Script
    from qtasks_fast.schemas import Envelope


class _UuidName(msgspec.Struct):
    """Only the uuid and task name of an envelope: decoding skips the arguments without building them."""

    uuid: str = msgspec.field(name="u", default="")
    task_name: str = msgspec.field(name="n", default="")


_Event = msgspec.msgpack.Decoder(_UuidName)


def process_events(worker: str, flat: Sequence[Any], now_ms: int) -> tuple[int, bytes, list[str]] | None:
    """The arguments of op ``started`` for one fetched batch ``[prio, id, envelope, deliveries]*``: its
    ``process`` events and start times (None when it holds no envelope of ours)."""
    events: list[str] = []
    started: list[str] = []
    for j in range(0, len(flat), 4):
        try:
            env = _Event.decode(flat[j + 2])
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a malformed body: the worker dead-letters it (and that writes its event)
        msg_id = flat[j + 1]
        events += (env.uuid, "process", env.task_name, worker)
        started += (env.uuid, f"{flat[j]} {msg_id.decode() if isinstance(msg_id, bytes) else msg_id} {now_ms}")
    if not events:
        return None
    return len(events) // 4, msgspec.msgpack.encode(events), started


async def record_started(script: Script, worker: str, out: list[tuple[str, list[Any]]]) -> None:
    """What op fetch records of the tasks it hands out (P:ev events, start times in P:q), for a fetch that
    bypassed it: op ``started``, one call per queue of ``out`` (the fetch's ``[(queue, flat)]``)."""
    now = int(time.time() * 1000)
    for queue, flat in out:
        args = process_events(worker, flat, now)
        if args is not None:
            await script.started(queue, *args)


def restart_links(script: Script, envelopes: Sequence[Envelope], skipped: dict[str, str],
                  ttl: float) -> list[tuple[Any, ...]]:
    """SADD + PEXPIRE of ``P:rs:<restarted uuid>`` for each enqueued envelope that restarts another (for
    ``task_detail``; none for the others)."""
    cmds: list[tuple[Any, ...]] = []
    for e in envelopes:
        of = e.meta.get(META_RESTART_OF) if e.meta else None
        if of and e.uuid not in skipped:
            key = script.restarts_key(e.queue, of)
            cmds += [("SADD", key, e.uuid), ("PEXPIRE", key, int(ttl * 1000))]
    return cmds


__all__ = ["process_events", "record_started", "restart_links"]
