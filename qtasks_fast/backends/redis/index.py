"""The few query-side writes ``RedisBroker`` makes from Python rather than in its Lua (see redis.lua's header).

* the ``process`` events of the tasks handed out by the fetches that bypass op fetch (plain XREADGROUP: the hot
  read and the blocking read), kept by :class:`PendingStarts` until the worker's
  next settle of their queue carries them (no command of their own: the issue's cost rule allows at most one
  per settled batch, and a busy worker settles all the time), or op ``started`` sends them when no settle
  comes within ``START_GRACE`` (long tasks: a live view still sees ``process`` within a second). Their start
  times are not sent: Redis has them as the PEL's delivery times (redis.lua, ``P:q`` and op renew);
* restart links (``P:rs:<uuid>``) of ``app.restart`` enqueues, rare enough to cost a command of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from qtasks_fast.log import get_logger
from qtasks_fast.schemas.envelope import META_RESTART_OF

if TYPE_CHECKING:
    from qtasks_fast.abc.broker import Outcome
    from qtasks_fast.backends.redis.script import Script
    from qtasks_fast.schemas import Envelope

log = get_logger("broker")

#: how long the start of a plain-read task may wait for a settle of its queue to carry it, in seconds
START_GRACE = 0.4


class _UuidName(msgspec.Struct):
    """Only the uuid and task name of an envelope: decoding skips the arguments without building them."""

    uuid: str = msgspec.field(name="u", default="")
    task_name: str = msgspec.field(name="n", default="")


_Event = msgspec.msgpack.Decoder(_UuidName)

#: fetched batches not recorded yet: ``(flat [prio, id, envelope, deliveries]*, fetch ms, worker)``
_Batch = tuple[Sequence[Any], int, str]


def process_events(batches: Iterable[_Batch]) -> list[str]:
    """The ``process`` events (``[uuid, 'process', name, worker]*``, the P:ev entry layout) of fetched batches."""
    events: list[str] = []
    for flat, _, worker in batches:
        for j in range(0, len(flat), 4):
            try:
                env = _Event.decode(flat[j + 2])
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # a malformed body: the worker dead-letters it (and that writes its event)
            events += (env.uuid, "process", env.task_name, worker)
    return events


class Carried(NamedTuple):
    """What a settle carries (:meth:`PendingStarts.carry`): per queue, events for ``pack.settle_args(carried=)``,
    and the batches they came from (for a retry)."""

    events: dict[str, list[str]]
    taken: dict[str, list[_Batch]]


class PendingStarts:
    """What op fetch records of the tasks it hands out (their P:ev events), held for the fetches
    that bypassed it until a settle of their queue carries it (:meth:`carry`) or ``START_GRACE`` passes
    (:meth:`flush`, op ``started``). One per broker; all on the worker's event loop."""

    __slots__ = ("_script", "_batches", "_timer", "_flushing")

    def __init__(self, script: Script) -> None:
        self._script = script
        self._batches: dict[str, list[_Batch]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Future[None] | None = None

    def note(self, out: list[tuple[str, list[Any]]], worker: str) -> None:
        """Hold a plain fetch's ``[(queue, flat)]``; the grace timer starts with the first batch held.

        The timer is not cancelled when a settle carries everything held: it fires once and finds nothing (or
        a batch held since, younger than the grace: see _due). Why: an idle worker fetches and settles one
        task at a time, and a timer armed and cancelled per task cost ~9 µs of its wake -> body path
        (``call_later`` + ``cancel``), against one timer per ``START_GRACE`` now."""
        if not out:
            return
        now = int(time.time() * 1000)
        for queue, flat in out:
            self._batches.setdefault(queue, []).append((flat, now, worker))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(START_GRACE, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._batches:
            return
        # the timer is left armed when a settle carries everything (see note): a batch held since may be
        # younger than the grace, and waits for the rest of it
        left = START_GRACE - (time.time() * 1000 - min(held[0][1] for held in self._batches.values())) / 1000
        if left > 0.001:
            self._timer = asyncio.get_running_loop().call_later(left, self._due)
            return
        self._flushing = asyncio.ensure_future(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - a lost 'process' event must not end the worker
            log.warning("could not record the start of fetched tasks (%s): they list without started_at", exc)

    async def flush(self, queues: Iterable[str] | None = None) -> None:
        """Op ``started`` now for what is held of ``queues`` (all when None): before a release or dead-letter of
        fetched tasks (their events then come in order), and when no settle came within ``START_GRACE``."""
        take = list(self._batches) if queues is None else [q for q in set(queues) if q in self._batches]
        batches = {q: self._batches.pop(q) for q in take}
        for queue, held in batches.items():
            events = process_events(held)
            if events:
                await self._script.started(queue, len(events) // 4, msgspec.msgpack.encode(events))

    async def carry(self, outcomes: Sequence[Outcome]) -> Carried | None:
        """Take what is held of the queues ``outcomes`` settle: per queue, the ``process`` events that lead the
        settle's events (``pack.settle_args(carried=)``). Waits for a flush in flight first, so a task's
        ``process`` event never lands after its settle. Give it back (:meth:`put_back`) when the settle fails."""
        if self._flushing is not None:
            if not self._flushing.done():
                await asyncio.shield(self._flushing)
            self._flushing = None
        queues = {o[0].queue for o in outcomes if o[0].queue in self._batches}
        if not queues:
            return None
        taken = {queue: self._batches.pop(queue) for queue in queues}
        return Carried({queue: process_events(held) for queue, held in taken.items()}, taken)

    def put_back(self, carried: Carried) -> None:
        """A settle that carried these failed (an outage: the worker sends it again): hold them again, ahead of
        what was fetched since, so the retry carries them (a settle whose reply only was lost writes them twice:
        a repeated event, never a lost one)."""
        for queue, held in carried.taken.items():
            self._batches[queue] = [*held, *self._batches.get(queue, ())]
        if self._batches and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(START_GRACE, self._due)

    def close(self) -> None:
        """Drop what is held (the broker is closing: its fetched tasks were settled or released already)."""
        self._batches.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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


__all__ = ["START_GRACE", "Carried", "PendingStarts", "process_events", "restart_links"]
